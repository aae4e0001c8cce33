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
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            parts = name.split(".")
            if parts[0] == "selfplay" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in LAYERS:  # the old top-level names must not come back
                found.add(f"bare {parts[0]}")
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = {str(p.relative_to(ROOT)): sorted(_imports(p) - allowed) for p in sorted((ROOT / layer).rglob("*.py"))}
    assert not {k: v for k, v in wrong.items() if v}, f"{layer} may import only {sorted(allowed)}"


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from selfplay.training.config import load_config\nimport games.core\n")
    assert _imports(bad) == {"training", "bare games"}


def test_installed_names_live_under_selfplay_only(tmp_path):
    code = (
        "import importlib.util, sys; import selfplay.training, selfplay.games.core, selfplay.arena.play; "
        "print(all(importlib.util.find_spec(n) is None for n in ('games', 'agents', 'arena', 'training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_help_imports_no_heavy_library(tmp_path):
    code = (
        "import sys; from selfplay.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['play', '--help'], ['check-game', '--help']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'accelerate', 'deepspeed') if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)


def test_every_data_file_of_the_packages_is_installed():
    """Non-Python files inside the package folders (the Leduc expert's table, the quickstart recipe) match the
    package-data patterns, so a wheel install (pip install ., not -e) carries them."""
    import fnmatch
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for package, folder in setup["package-dir"].items():
        patterns = setup.get("package-data", {}).get(package, [])
        for name in tracked:
            inside = Path(name).parent == Path(folder)
            if inside and not name.endswith(".py") and not any(fnmatch.fnmatch(Path(name).name, p) for p in patterns):
                missing.append(name)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
    from selfplay.train import QUICKSTART

    assert QUICKSTART.is_file() and (ROOT / "configs/quickstart.yaml").resolve() == QUICKSTART.resolve()
