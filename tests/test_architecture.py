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
            if Path(folder) not in Path(name).parents:
                continue
            rel = Path(name).relative_to(folder)
            if rel.parent == Path("."):  # beside the modules: data files need a pattern
                if not name.endswith(".py") and not any(fnmatch.fnmatch(rel.name, p) for p in patterns):
                    missing.append(name)
            elif not any(fnmatch.fnmatch(str(rel), p) for p in patterns):  # a plain subfolder (games/builtin)
                missing.append(name)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
    from selfplay.train import QUICKSTART

    assert QUICKSTART.is_file() and (ROOT / "configs/quickstart.yaml").resolve() == QUICKSTART.resolve()


def test_a_wheel_carries_the_built_in_games_under_their_import_names(tmp_path):
    """The built-in games live in games/builtin/ but import as selfplay.games.NAME: a wheel install must carry them
    (package data) and find them there (the package's path), not only the editable install."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*wheel, str(source)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("selfplay-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"selfplay/games/builtin/tictactoe.py", "selfplay/games/builtin/leduc_expert.json"} <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import selfplay.games.tictactoe as t, selfplay.games.leduc_poker as l, selfplay.games.registry as r; "
        f"print(t.__file__ == {str(site / 'selfplay/games/builtin/tictactoe.py')!r}, l.EXPERT_TABLE.is_file(), "
        "'kuhn_poker' in r.registered_games())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout.split() == ["True", "True", "True"], out.stderr[-2000:]


PACKAGES = {"selfplay": "selfplay", **{f"selfplay.{layer}": layer for layer in LAYERS}}


def _module_graph():
    """Module -> the selfplay modules it imports (top-level and function-level; not under ``if TYPE_CHECKING``).
    ``from selfplay.games import exact`` imports the module ``exact``; a package's ``__init__`` counts only where it
    is named itself."""
    import networkx as nx

    modules = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = rel.parts[1:] if rel.parts[0] == "builtin" else rel.parts  # games/builtin/x.py is games.x
            modules[".".join([package, *parts]).removesuffix(".__init__")] = path
    graph = nx.DiGraph()
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for n in ast.walk(block)
        }
        graph.add_node(name)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def _circles(graph) -> list[list[str]]:
    import networkx as nx

    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def test_no_import_circle_inside_a_layer():
    """Modules of one layer import each other one way too: each can be read knowing only those below it."""
    assert _circles(_module_graph()) == []


def test_the_circle_checker_sees_a_circle():
    import networkx as nx

    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    assert _circles(graph) == [["a", "b", "c"]]
    assert "selfplay.games.tictactoe" in _module_graph()  # the built-in games are in the graph, by import name


@pytest.mark.parametrize("folder", ["agents", "arena", "training", "selfplay"])
def test_modules_and_functions_stay_small_and_take_keywords(folder):
    """No module over 400 lines, no function over 60, none with five or more positional parameters (beyond
    ``self``): a newcomer reads one concern at a time, and two swapped arguments fail loudly."""
    long_modules, long_functions, positional = [], [], []
    for path in sorted((ROOT / folder).rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > 400:
            long_modules.append(f"{path.relative_to(ROOT)} ({len(source.splitlines())})")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            where = f"{path.relative_to(ROOT)}:{node.name}"
            if node.end_lineno - node.lineno + 1 > 60:
                long_functions.append(f"{where} ({node.end_lineno - node.lineno + 1})")
            plain = [a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(plain) >= 5:
                positional.append(f"{where} ({len(plain)})")
    assert (long_modules, long_functions, positional) == ([], [], [])
