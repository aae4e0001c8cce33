"""Games: the rules, as pure Python. See ``games.core`` for the API a game implements."""

from games.core import Failure, Game, InvalidAction, InvalidPolicy, Message, Turn, system, user
from games.registry import game_class, make_game, register, registered_games

__all__ = [
    "Failure", "Game", "InvalidAction", "InvalidPolicy", "Message", "Turn", "system", "user",
    "game_class", "make_game", "register", "registered_games",
]
