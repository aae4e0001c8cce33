"""Training recipes by name: ``selfplay train kuhn_poker_tiny`` finds ``configs/kuhn_poker_tiny.yaml``, and
``selfplay recipes`` lists them with the first line of each recipe's header comment.

Recipes are looked up in ``./configs`` (a project of one's own), then in the ``configs/`` folder of this source
checkout; the quickstart also ships inside the package, so it is found after a plain ``pip install`` too."""

from __future__ import annotations

from pathlib import Path


def _packaged() -> Path:
    """The quickstart recipe shipped with the package (``selfplay.training``'s folder, found without importing it)."""
    import importlib.util

    return Path(importlib.util.find_spec("selfplay.training").submodule_search_locations[0]) / "quickstart.yaml"


PACKAGED = _packaged()


def recipe_dirs() -> list[Path]:
    """Where recipes are looked for, in order: ./configs, then this checkout's configs/ (those that exist)."""
    found = []
    for folder in (Path.cwd() / "configs", Path(__file__).resolve().parent.parent / "configs"):
        if folder.is_dir() and folder.resolve() not in [f.resolve() for f in found]:
            found.append(folder)
    return found


def recipes() -> dict[str, Path]:
    """Every recipe by name (the file name without .yaml); an earlier folder wins."""
    out: dict[str, Path] = {}
    for folder in reversed(recipe_dirs()):
        out.update({p.stem: p for p in sorted(folder.glob("*.yaml"))})
    if PACKAGED.is_file():
        out.setdefault("quickstart", PACKAGED)
    return dict(sorted(out.items()))


def resolve(path: str) -> str:
    """A config path as given when it is a file, else the recipe of that name (``kuhn_poker_tiny`` or
    ``kuhn_poker_tiny.yaml``); FileNotFoundError listing the recipes when neither exists."""
    if Path(path).is_file():
        return path
    name = Path(path).name.removesuffix(".yaml").removesuffix(".yml")
    known = recipes()
    if name in known and (Path(path).name == path or not Path(path).parent.exists()):
        return str(known[name])
    names = ", ".join(known) or "none found"
    raise FileNotFoundError(
        f"config file {path!r} does not exist, and it names no recipe; recipes (selfplay recipes lists them): {names}"
    )


def describe(path: Path) -> str:
    """The first line of a recipe's header comment."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def anchor_game(game: str, recipe: str | None) -> str:
    """A game named by a file path (``path/to/game.py[:Class]``) as an absolute path, so the run's config.json names
    it from anywhere: relative to the working directory, or else to the project folder that holds the recipe's
    ``configs/`` (``selfplay train your_game_tiny`` from another folder). Other game specs unchanged."""
    file, colon, cls = game.partition(":")
    if not file.endswith(".py"):
        return game
    candidates = [Path(file)] + ([Path(recipe).resolve().parent.parent / file] if recipe else [])
    found = next((c for c in candidates if c.is_file()), None)
    return f"{found.resolve()}{colon}{cls}" if found is not None else game
