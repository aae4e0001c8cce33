"""Finding games by name: the ``@register`` decorator, the ``selfplay.games`` entry-point group, and
``module:Class`` / ``path/to/file.py:Class`` specs for games that live outside any package."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from selfplay.games.core import Game, validate_game_class

ENTRY_POINT_GROUP = "selfplay.games"
_REGISTRY: dict[str, type[Game]] = {}
_BUILTINS = tuple(
    f"selfplay.games.{name}"
    for name in (
        "tictactoe",
        "kuhn_poker",
        "leduc_poker",
        "liars_dice",
        "creator_solver",
        "sneaky_critic",
        "arithmetic",
        "teacher_student",
        "goofspiel",
        "signalling",
        "kuhn3",
        "negotiation",
        "debate",
    )
)
_loaded = False


def register(cls: type[Game]) -> type[Game]:
    """Class decorator: check the class has the game API and make it findable by ``cls.name``."""
    validate_game_class(cls)
    known = _REGISTRY.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"game name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTINS:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if cls.name not in _REGISTRY:
            register(cls)


def registered_games() -> dict[str, type[Game]]:
    """All games: built-ins, entry points and anything registered so far, by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def _load_file(target: str):
    """The module a game file defines, executed once per process."""
    path = Path(target)
    if not path.is_file():
        raise ValueError(f"game file {target!r} does not exist")
    module_name = f"selfplay_user_game_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # as for a script: the file's siblings import (a game split over several files)
            sys.path.insert(0, folder)
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses look their module up while the file executes
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ValueError(f"cannot load game file {target!r}: {type(exc).__name__}: {exc}") from exc
    return module


def _only_game_in(target: str) -> type[Game]:
    """``file.py`` without ``:Class``: the one game class the file defines."""
    module = _load_file(target)
    found = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Game) and c is not Game and c.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found)
        raise ValueError(
            f"game file {target!r} defines {f'several games ({names})' if found else 'no Game subclass'}: "
            f"name one as '{target}:CLASS'"
        )
    validate_game_class(found[0])
    return found[0]


def _load_from_spec(spec: str) -> type[Game]:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        module = _load_file(target)
    else:
        if not target or not attr:
            raise ValueError(f"game spec {spec!r}: expected module:Class or path/to/file.py:Class")
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"cannot import module {target!r} for game spec {spec!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f"{target!r} has no class {attr!r} (game spec {spec!r})")
    validate_game_class(cls)
    return cls


def game_class(spec: str) -> type[Game]:
    """Resolve a registered name, ``openspiel:GAME(params)``, ``textarena:ENV_ID``, ``pettingzoo:FAMILY.ENV``,
    ``module:Class``, ``path/to/file.py:Class`` or ``path/to/file.py`` (its one game class) to a game class."""
    if spec.startswith("openspiel:"):
        from selfplay.games.openspiel import openspiel_game

        return openspiel_game(spec[len("openspiel:") :])
    if spec.startswith("pettingzoo:"):
        from selfplay.games.pettingzoo_game import pettingzoo_game

        return pettingzoo_game(spec[len("pettingzoo:") :])
    if spec.startswith("textarena:"):
        from selfplay.games.textarena_game import textarena_game

        return textarena_game(spec[len("textarena:") :])
    if ":" in spec:
        return _load_from_spec(spec)
    if spec.endswith(".py"):
        return _only_game_in(spec)
    games = registered_games()
    if spec not in games:
        raise ValueError(
            f"unknown game {spec!r}: expected one of {', '.join(games)} or a 'module:Class' / 'file.py:Class' / 'file.py' spec"
        )
    return games[spec]


def make_game(spec: str, **kwargs) -> Game:
    """Instantiate a game from a spec with constructor keyword arguments (e.g. ``dice=3``)."""
    cls = game_class(spec)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad options {kwargs} for game {cls.name!r}: {exc}") from exc
