"""Goofspiel (Game of Pure Strategy; Flood 1950s, as in OpenSpiel's ``goofspiel``): simultaneous sealed bids.

Each player holds the cards 1..N. A shuffled prize deck 1..N is turned up one card at a time; each round both
players bid one of their cards at the same time (a simultaneous turn: neither sees the other's pending bid), the
higher bid takes the prize's points, equal bids discard it, and bid cards are spent. After N rounds the player
with more points wins (+1 / -1, 0 on equal points). Bids are revealed after each round; the order of the prizes
still face down is the only other hidden information.

The expert bids the card equal to the prize (the "matching" strategy), a strong simple baseline against random.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from selfplay.games.core import Failure, Game, InvalidAction, Turn, system, user
from selfplay.games.registry import register

EXACT_CARDS = 4  # the most cards evaluated exactly (4: 53,496 nodes, 34,952 information states)


@register
@dataclass
class Goofspiel(Game):
    name = "goofspiel"
    description = "Goofspiel: simultaneous sealed bids with cards 1..N for prizes 1..N; more points wins."
    roles = ("player_0", "player_1")
    reward_range = (-1.0, 1.0)
    max_turns = 13
    action_format = "one of your cards in square brackets, like [3]"
    cards: int = 4  # N: cards per hand and prizes

    def __post_init__(self) -> None:
        if not 2 <= self.cards <= 13:
            raise ValueError(f"goofspiel cards={self.cards}: expected 2 to 13")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        prizes = list(range(1, self.cards + 1))
        self.rng.shuffle(prizes)
        self.reset_deal(tuple(prizes))

    def deals(self) -> list[tuple[float, tuple[int, ...]]] | None:
        """Every order of the prize deck, equally likely (exact evaluation; the order stays face down); None past
        ``EXACT_CARDS`` cards, whose trees are too large to enumerate (5 cards: about 10^7 histories)."""
        if self.cards > EXACT_CARDS:
            return None
        orders = list(itertools.permutations(range(1, self.cards + 1)))
        return [(1 / len(orders), order) for order in orders]

    def reset_deal(self, deal: tuple[int, ...]) -> None:
        self.prizes = list(deal)
        self.hands = [list(range(1, self.cards + 1)) for _ in self.roles]
        self.points = [0, 0]
        self.bids: list[tuple[int, int, int]] = []  # (prize, bid of player_0, bid of player_1) per round

    @property
    def prize(self) -> int:
        return self.prizes[len(self.bids)]

    def turn(self) -> Turn | None:
        return None if len(self.bids) == self.cards else Turn.together(*self.roles)

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        past = "; ".join(f"prize {p}: you {b[seat]}, opponent {b[1 - seat]}" for p, *b in self.bids) or "none yet"
        return [
            system(
                f"You are playing Goofspiel. Both players hold cards 1 to {self.cards}; each round a prize "
                "card is turned up and both bid a card at the same time; the higher bid wins the prize's "
                f"points, equal bids discard it. Most points wins. Answer with {self.action_format}."
            ),
            user(
                f"You are {role}. Prize: {self.prize}. Your cards: {self.hands[seat]}. Opponent's cards: "
                f"{self.hands[1 - seat]}. Points: you {self.points[seat]}, opponent {self.points[1 - seat]}. "
                f"Rounds so far: {past}."
            ),
        ]

    def compact_observation(self, role: str) -> str:
        """``P0 p3 h124 o134 s2-1:``: seat, prize, own cards, opponent's cards, points (own first)."""
        seat = self.roles.index(role)
        cards = lambda h: "".join(map(str, h))  # noqa: E731
        return (
            f"P{seat} p{self.prize} h{cards(self.hands[seat])} o{cards(self.hands[1 - seat])} "
            f"s{self.points[seat]}-{self.points[1 - seat]}:"
        )

    def parse(self, role: str, text: str) -> int:
        found = [int(t) for t in text.replace("]", "[").split("[")[1::2] if t.strip().isdigit()]
        if len(found) != 1:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected {self.action_format}, got {text[:60]!r}")
        if found[0] not in self.hands[self.roles.index(role)]:
            raise InvalidAction(Failure.ILLEGAL, f"card {found[0]} is not in your hand")
        return found[0]

    def step(self, role: str, actions: list) -> None:
        raise InvalidAction(Failure.ILLEGAL, "goofspiel has only simultaneous turns")

    def step_together(self, actions: dict[str, int]) -> None:
        b0, b1 = (actions[r] for r in self.roles)
        if b0 != b1:
            self.points[0 if b0 > b1 else 1] += self.prize
        self.bids.append((self.prize, b0, b1))
        for seat, bid in enumerate((b0, b1)):
            self.hands[seat].remove(bid)

    def rewards(self) -> dict[str, float]:
        a, b = self.points
        sign = (a > b) - (a < b)
        return {self.roles[0]: float(sign), self.roles[1]: float(-sign)}

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{c}]" for c in self.hands[self.roles.index(role)]]

    def expert_action(self, role: str, rng: random.Random) -> str:
        hand = self.hands[self.roles.index(role)]
        return f"[{min(hand, key=lambda c: (abs(c - self.prize), c))}]"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The prizes still face down, reshuffled (bids are revealed together, so no move is pending here)."""
        rest = self.prizes[len(self.bids) + 1 :]
        rng.shuffle(rest)
        self.prizes[len(self.bids) + 1 :] = rest

    def info(self) -> dict:
        return {"points": list(self.points)}
