"""Games: the rules, as pure Python. See ``games.core`` for the API a game implements.

This folder holds the framework (the game API, registry, conformance checker, exact evaluation, sandbox and the
OpenSpiel, TextArena and PettingZoo adapters); ``builtin/`` holds the games that ship with selfplay, the ones to
copy. They import as ``selfplay.games.NAME`` all the same (``selfplay.games.tictactoe``): the package's path
includes that folder.
"""

from pathlib import Path

from selfplay.games.core import (
    Failure,
    Game,
    InvalidAction,
    InvalidPolicy,
    LearningProgress,
    Message,
    Outcome,
    Turn,
    bracket_word,
    outcome_of,
    system,
    user,
    with_options,
)
from selfplay.games.registry import game_class, make_game, register, registered_games

__path__.append(str(Path(__file__).with_name("builtin")))  # the built-in games import as selfplay.games.NAME

__all__ = [
    "Failure",
    "Game",
    "InvalidAction",
    "InvalidPolicy",
    "LearningProgress",
    "Message",
    "Outcome",
    "Turn",
    "bracket_word",
    "outcome_of",
    "system",
    "user",
    "with_options",
    "game_class",
    "make_game",
    "register",
    "registered_games",
]
