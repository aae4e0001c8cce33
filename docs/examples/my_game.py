"""An example game outside the package: Nim, take 1 or 2 stones, whoever takes the last wins.

selfplay check-game docs/examples/my_game.py:Nim
selfplay play docs/examples/my_game.py:Nim --agents random random --games 100
"""

from dataclasses import dataclass

from selfplay.games import Failure, Game, InvalidAction, Turn, system, user


@dataclass
class Nim(Game):
    """Take 1 or 2 stones from a pile of 7; whoever takes the last stone wins."""

    name = "nim_user"
    hidden_information = False  # both players see the pile
    description = "Nim from a file outside the project"
    roles = ("first", "second")
    max_turns = 7

    def reset(self, seed):
        self.seed_rng(seed)
        self.pile, self.moves = 7, 0

    def turn(self):
        return None if self.pile == 0 else Turn(self.roles[self.moves % 2])

    def observe(self, role):
        return [system("Nim: take 1 or 2 stones."), user(f"{self.pile} stones left.")]

    def parse(self, role, text):
        if text.strip() not in ("1", "2") or int(text) > self.pile:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected 1 or 2, got {text!r}")
        return int(text)

    def step(self, role, actions):
        self.pile -= actions[0]
        self.moves += 1

    def rewards(self):
        last = self.roles[(self.moves - 1) % 2]
        return {r: 1.0 if r == last else -1.0 for r in self.roles}

    def legal_actions(self, role):
        return [str(n) for n in (1, 2) if n <= self.pile]
