"""TicTacToe, the first zero-sum game of SPIRAL: two players, X (player_0) moves first.

Cells are numbered 1-9 left to right, top to bottom; an action is a cell number in brackets, e.g. ``[5]``.
The expert agent is exact minimax (ties broken at random among optimal moves), so it never loses.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache

from selfplay.games.core import Failure, Game, InvalidAction, Turn, system, user
from selfplay.games.registry import register

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
MARKS = ("X", "O")
_CELL = re.compile(r"\[\s*(\d+)\s*\]|^\s*(\d+)\s*\.?\s*$")


# -- pure board logic: a board is a 9-character string of "X", "O" and "." ----------------------------
def winner(board: str) -> str | None:
    """The mark that owns a full line, else None."""
    for a, b, c in LINES:
        if board[a] != "." and board[a] == board[b] == board[c]:
            return board[a]
    return None


def free_cells(board: str) -> list[int]:
    """Indices (0-8) of empty cells."""
    return [i for i, mark in enumerate(board) if mark == "."]


def completing_cells(board: str, mark: str) -> list[int]:
    """Empty cells where ``mark`` would complete a line (its wins; the opponent's are the cells to block)."""
    return [c for c in free_cells(board) if winner(place(board, c, mark))]


def place(board: str, cell: int, mark: str) -> str:
    """The board after ``mark`` takes ``cell``."""
    return board[:cell] + mark + board[cell + 1 :]


@cache
def minimax_value(board: str, mark: str) -> int:
    """Game value for the player ``mark`` about to move: +1 win, 0 draw, -1 loss under optimal play."""
    if winner(board):
        return -1  # the previous mover completed a line
    cells = free_cells(board)
    if not cells:
        return 0
    other = MARKS[1 - MARKS.index(mark)]
    return max(-minimax_value(place(board, c, mark), other) for c in cells)


def best_cells(board: str, mark: str) -> list[int]:
    """All cells that achieve the minimax value for ``mark``."""
    other = MARKS[1 - MARKS.index(mark)]
    scores = {c: -minimax_value(place(board, c, mark), other) for c in free_cells(board)}
    top = max(scores.values())
    return [c for c, s in scores.items() if s == top]


def compact_prompt(board: str, mark: str) -> str:
    """The short prompt for tiny models: the mark to play, then each cell after its number ("X1.2X3O...").

    The numbers are the answer's tokens, so a tiny model's attention can point at a cell; on the bare board
    ("X.X.O....") the tiny model plateaus even when trained on minimax's moves (benchmarks/reinforce_probe.py).
    """
    return mark + "".join(f"{i + 1}{c}" for i, c in enumerate(board))


def render(board: str) -> str:
    """The board as three rows, empty cells showing their number."""
    cells = [mark if mark != "." else str(i + 1) for i, mark in enumerate(board)]
    return "\n".join(" | ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))


# -- the game ------------------------------------------------------------------------------------------
@register
@dataclass
class TicTacToe(Game):
    name = "tictactoe"
    hidden_information = False  # both players see the whole board
    description = "3x3 TicTacToe; X (player_0) moves first; win +1, loss -1, draw 0."
    roles = ("player_0", "player_1")
    max_turns = 9
    action_format = "the number of an empty cell in square brackets, e.g. [5]"
    compact: bool = False  # a short prompt for tiny models: the mark, then each cell after its number ("X1.2X3O...")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.board = "." * 9
        self.moves = 0

    def turn(self) -> Turn | None:
        if winner(self.board) or not free_cells(self.board):
            return None
        return Turn(self.roles[self.moves % 2])

    def compact_observation(self, role: str) -> str:
        """The mark, then each cell after its number (``X1.2X3O...``): what ``observer=compact`` agents read."""
        return compact_prompt(self.board, MARKS[self.roles.index(role)])

    def observe(self, role: str) -> list:
        mark = MARKS[self.roles.index(role)]
        if self.compact:
            return [user(compact_prompt(self.board, mark))]
        return [
            system(
                f"You are playing TicTacToe as {mark}. Get three {mark} in a row to win. "
                f"Answer with {self.action_format}."
            ),
            user(
                f"Board:\n{render(self.board)}\n\nYour move ({mark}). Free cells: "
                f"{', '.join(str(c + 1) for c in free_cells(self.board))}."
            ),
        ]

    def parse(self, role: str, text: str) -> int:
        match = _CELL.search(text)
        if not match:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        cell = int(match.group(1) or match.group(2)) - 1
        if cell not in free_cells(self.board):
            raise InvalidAction(
                Failure.ILLEGAL,
                f"cell {cell + 1} is not free; free cells: {', '.join(str(c + 1) for c in free_cells(self.board))}",
            )
        return cell

    def step(self, role: str, actions: list) -> None:
        self.board = place(self.board, actions[0], MARKS[self.roles.index(role)])
        self.moves += 1

    def rewards(self) -> dict[str, float]:
        mark = winner(self.board)
        if mark is None:
            return {r: 0.0 for r in self.roles}
        won = self.roles[MARKS.index(mark)]
        return {r: 1.0 if r == won else -1.0 for r in self.roles}

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{c + 1}]" for c in free_cells(self.board)]

    def expert_action(self, role: str, rng: random.Random) -> str:
        return f"[{rng.choice(best_cells(self.board, MARKS[self.roles.index(role)])) + 1}]"
