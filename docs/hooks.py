"""mkdocs hooks: the API reference's source tree, and a build that fails on a stale generated page."""

from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
API_SRC = ROOT / "build" / "api-src"  # mkdocs.yml's mkdocstrings paths


def on_startup(**_) -> None:
    """The packages as they import (selfplay.games is games/, ...), as a tree of links griffe can read statically:
    the repository keeps the folders at the top, which an editable install maps but griffe's finder does not."""
    package = API_SRC / "selfplay"
    package.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in (ROOT / "selfplay").glob("*.py")}
    links.update({name: ROOT / name for name in ("games", "agents", "arena", "training")})
    for name, target in links.items():
        link = package / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


def on_pre_build(config) -> None:
    """Refuse to build with a stale ``docs/reference/config.md`` or ``cli.md``."""
    from selfplay.reference import stale

    old = stale(Path(config["docs_dir"]) / "reference")
    if old:
        raise PluginError(f"docs/reference/{', '.join(old)} is stale: run python -m selfplay.reference")
