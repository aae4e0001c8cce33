"""A cooperative signalling game (Lewis 1969, "Convention"): one team, one reward.

The sender sees a target colour among K and sends one code word; the receiver sees only the word and names a
colour. Both get 1 when the receiver names the target, else 0: a cooperative game (``Outcome("cooperative")``), so
reports give the team's success rate, and a forfeit costs the whole team. The words carry no meaning of their own
(``alpha``, ``beta``, ...): the team must agree on a convention. The expert pair uses the convention word i for
colour i.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfplay.games.core import Game, Outcome, Turn, bracket_word, system, user
from selfplay.games.registry import register

COLOURS = ("red", "green", "blue", "yellow", "purple")
WORDS = ("alpha", "beta", "gamma", "delta", "omega")


@register
@dataclass
class Signalling(Game):
    name = "signalling"
    description = (
        "Cooperative signalling: a sender codes a hidden colour in a word, the receiver decodes it; team reward."
    )
    roles = ("sender", "receiver")
    reward_range = (0.0, 1.0)
    max_turns = 2
    outcome = Outcome("cooperative", win_lose=True)
    action_format = "one word in square brackets, like [alpha] or [red]"
    colours: int = 3  # K

    def __post_init__(self) -> None:
        if not 2 <= self.colours <= len(COLOURS):
            raise ValueError(f"signalling colours={self.colours}: expected 2 to {len(COLOURS)}")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.target = self.rng.randrange(self.colours)
        self.word: str | None = None
        self.guess: str | None = None

    def turn(self) -> Turn | None:
        if self.word is None:
            return Turn("sender")
        return Turn("receiver") if self.guess is None else None

    def _options(self, role: str) -> list[str]:
        return list(WORDS[: self.colours] if role == "sender" else COLOURS[: self.colours])

    def observe(self, role: str) -> list:
        rules = (
            f"You and a partner play a signalling game as one team. The sender sees a colour among "
            f"{', '.join(COLOURS[: self.colours])} and sends one word among {', '.join(WORDS[: self.colours])}; the "
            "receiver sees only the word and names a colour. The team scores 1 if it names the sender's colour."
        )
        if role == "sender":
            return [
                system(rules),
                user(
                    f"You are the sender. The colour is {COLOURS[self.target]}. "
                    f"Send one of: {', '.join(f'[{w}]' for w in self._options(role))}."
                ),
            ]
        return [
            system(rules),
            user(
                f"You are the receiver. The word is {self.word}. "
                f"Name one of: {', '.join(f'[{c}]' for c in self._options(role))}."
            ),
        ]

    def compact_observation(self, role: str) -> str:
        return f"S {COLOURS[self.target]}:" if role == "sender" else f"R {self.word}:"

    def parse(self, role: str, text: str) -> str:
        options = self._options(role)
        return bracket_word(text, options, options, self.action_format)

    def step(self, role: str, actions: list) -> None:
        if role == "sender":
            self.word = actions[0]
        else:
            self.guess = actions[0]

    def rewards(self) -> dict[str, float]:
        team = float(self.guess == COLOURS[self.target])
        return {r: team for r in self.roles}

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{o}]" for o in self._options(role)]

    def expert_action(self, role: str, rng: random.Random) -> str:
        if role == "sender":
            return f"[{WORDS[self.target]}]"
        return f"[{COLOURS[WORDS.index(self.word)]}]"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The receiver cannot see the colour: redraw it (the sender sees everything)."""
        if role == "receiver":
            self.target = rng.randrange(self.colours)

    def info(self) -> dict:
        return {"target": COLOURS[self.target], "word": self.word}
