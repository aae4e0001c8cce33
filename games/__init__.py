"""Games: the rules, as pure Python. See ``games.core`` for the API a game implements."""

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
