"""Liar's Dice, one round for two players: hidden dice, bids in text, a call of "liar" ends it.

Each player rolls ``dice`` six-sided dice (the seeded RNG) and sees only their own. player_0 bids first.
A bid "[bid Q F]" claims that at least Q of all dice show face F; each bid must be higher than the last
(more dice, or as many dice of a higher face). Instead of bidding a player may call "[liar]": the dice are
shown, and the bidder wins if the claim holds, else the caller wins. Win +1, loss -1. There are no wild ones.

The expert is a probability heuristic: it calls when the standing bid is less likely than not given its own
dice, and otherwise makes the likeliest higher bid (the lowest such, ties at random).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from math import comb

from selfplay.games.core import Failure, Game, InvalidAction, Turn, system, user
from selfplay.games.registry import register

FACES = 6
_BID = re.compile(r"\[\s*bid\s+(\d+)\s+(\d+)\s*\]", re.IGNORECASE)
_LIAR = re.compile(r"\[\s*liar\s*\]", re.IGNORECASE)


def bid_rank(quantity: int, face: int) -> int:
    """Total order of bids: more dice beats fewer; with as many dice, the higher face wins."""
    return (quantity - 1) * FACES + (face - 1)


def p_at_least(need: int, unknown_dice: int) -> float:
    """Probability that at least ``need`` of ``unknown_dice`` fair dice show one given face."""
    if need <= 0:
        return 1.0
    return sum(
        comb(unknown_dice, k) * (1 / FACES) ** k * (1 - 1 / FACES) ** (unknown_dice - k)
        for k in range(need, unknown_dice + 1)
    )


@register
@dataclass
class LiarsDice(Game):
    name = "liars_dice"
    description = "Liar's Dice, 2 players, hidden dice, one round of rising bids and a 'liar' call; +1/-1."
    roles = ("player_0", "player_1")
    max_turns = 2 * 5 * FACES + 1  # bids strictly rise, so even 5 dice each end by themselves within this
    action_format = "[bid Q F] to claim at least Q dice show face F, or [liar] to challenge the last bid"
    dice: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.dice <= 5:
            raise ValueError(f"liars_dice dice={self.dice}: expected 1 to 5 dice per player")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.hands = [sorted(self.rng.randint(1, FACES) for _ in range(self.dice)) for _ in self.roles]
        self.bids: list[tuple[int, int]] = []
        self.caller: int | None = None

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The opponent's dice, rolled afresh."""
        other = 1 - self.roles.index(role)
        self.hands[other] = sorted(rng.randint(1, FACES) for _ in range(self.dice))

    def turn(self) -> Turn | None:
        if self.caller is not None or self._highest_rank() == bid_rank(2 * self.dice, FACES):
            return None
        return Turn(self.roles[len(self.bids) % 2])

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        history = "; ".join(f"{self.roles[i % 2]} bid {q} x {f}" for i, (q, f) in enumerate(self.bids)) or "no bids yet"
        return [
            system(
                f"You are playing Liar's Dice against one opponent. Each of you has {self.dice} hidden "
                f"six-sided dice ({2 * self.dice} in all). Bids claim how many of ALL dice show a face; each "
                f"bid must be higher than the last. Answer with {self.action_format}."
            ),
            user(f"{self._dice_phrase(seat)}. Bids so far: {history}."),
        ]

    def parse(self, role: str, text: str) -> tuple[int, int] | str:
        if _LIAR.search(text):
            if not self.bids:
                raise InvalidAction(Failure.ILLEGAL, "there is no bid to challenge yet: make the first bid")
            return "liar"
        match = _BID.search(text)
        if not match:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        quantity, face = int(match.group(1)), int(match.group(2))
        if not (1 <= quantity <= 2 * self.dice and 1 <= face <= FACES):
            raise InvalidAction(
                Failure.ILLEGAL, f"bid {quantity} x {face} is out of range: quantity 1-{2 * self.dice}, face 1-{FACES}"
            )
        if bid_rank(quantity, face) <= self._highest_rank():
            q, f = self.bids[-1]
            raise InvalidAction(Failure.ILLEGAL, f"bid {quantity} x {face} does not beat {q} x {f}")
        return quantity, face

    def step(self, role: str, actions: list) -> None:
        if actions[0] == "liar":
            self.caller = self.roles.index(role)
        else:
            self.bids.append(actions[0])

    def rewards(self) -> dict[str, float]:
        if self.caller is None:  # the highest possible bid stands unchallenged: the bidder wins if it holds
            self.caller = 1 - (len(self.bids) - 1) % 2
        quantity, face = self.bids[-1]
        count = sum(hand.count(face) for hand in self.hands)
        winner = 1 - self.caller if count >= quantity else self.caller
        return {r: 1.0 if i == winner else -1.0 for i, r in enumerate(self.roles)}

    def legal_actions(self, role: str) -> list[str]:
        higher = [
            f"[bid {q} {f}]"
            for q in range(1, 2 * self.dice + 1)
            for f in range(1, FACES + 1)
            if bid_rank(q, f) > self._highest_rank()
        ]
        return higher + (["[liar]"] if self.bids else [])

    def expert_action(self, role: str, rng: random.Random) -> str:
        hand = self.hands[self.roles.index(role)]
        chance = lambda q, f: p_at_least(q - hand.count(f), self.dice)  # noqa: E731
        if self.bids and chance(*self.bids[-1]) < 0.5:
            return "[liar]"
        options = [
            (q, f)
            for q in range(1, 2 * self.dice + 1)
            for f in range(1, FACES + 1)
            if bid_rank(q, f) > self._highest_rank()
        ]
        best = max(chance(q, f) for q, f in options)
        if self.bids and best < 0.5:
            return "[liar]"
        lowest = min(bid_rank(q, f) for q, f in options if chance(q, f) == best)
        ties = [(q, f) for q, f in options if chance(q, f) == best and bid_rank(q, f) < lowest + FACES]
        q, f = rng.choice(ties)
        return f"[bid {q} {f}]"

    def secrets(self, role: str) -> list[str]:
        return [self._dice_phrase(self.roles.index(role))]

    def _highest_rank(self) -> int:
        return bid_rank(*self.bids[-1]) if self.bids else -1

    def _dice_phrase(self, seat: int) -> str:
        return f"Your dice ({self.roles[seat]}) show {' '.join(map(str, self.hands[seat]))}"
