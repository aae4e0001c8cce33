"""The layering rule and the package namespace: training -> arena -> agents -> games, the command above them all."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["games", "agents", "arena", "training"]  # each may import only those before it


def _imports(path: Path) -> set[str]:
    """The selfplay layers a module imports (top-level and function-level imports alike)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "selfplay" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in LAYERS:  # the old top-level names must not come back
                found.add(f"bare {parts[0]}")
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer):
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    wrong = {str(p.relative_to(ROOT)): sorted(_imports(p) - allowed) for p in sorted((ROOT / layer).rglob("*.py"))}
    assert not {k: v for k, v in wrong.items() if v}, f"{layer} may import only {sorted(allowed)}"


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from selfplay.training.config import load_config\nimport games.core\n")
    assert _imports(bad) == {"training", "bare games"}


def test_installed_names_live_under_selfplay_only(tmp_path):
    code = ("import importlib.util, sys; import selfplay.training, selfplay.games.core, selfplay.arena.play; "
            "print(all(importlib.util.find_spec(n) is None for n in ('games', 'agents', 'arena', 'training')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_help_imports_no_heavy_library(tmp_path):
    code = ("import sys; from selfplay.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['play', '--help'], ['check-game', '--help']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'accelerate', 'deepspeed') if m in sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
