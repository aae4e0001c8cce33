"""Three-player Kuhn Poker (Kuhn 1950, extended to N players as in OpenSpiel's ``kuhn_poker(players=3)``).

Four cards (Jack < Queen < King < Ace), one dealt to each of three players; each antes 1 chip. In seat order a
player checks or bets 1 chip; once someone has bet, every player after the bettor (in seat order, wrapping) calls
or folds, once. If nobody bets, all three show down. At showdown the highest card among the players still in takes
the pot. Rewards are chips won (zero-sum): a winner gains up to 4, a loser loses 1 or 2.

The expert is a simple scripted heuristic, not an equilibrium: bet or call with the Ace, call with the King when
only one opponent has bet, otherwise check or fold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfplay.games.core import Game, Outcome, Turn, bracket_word, system, user
from selfplay.games.registry import register

CARDS = ("Jack", "Queen", "King", "Ace")
ACTIONS = ("check", "bet", "call", "fold")


@register
@dataclass
class KuhnPoker3(Game):
    name = "kuhn_poker_3"
    description = "Three-player Kuhn Poker: 4 cards, hidden hands, check/bet then call/fold; chips won."
    roles = ("player_0", "player_1", "player_2")
    reward_range = (-2.0, 4.0)
    max_turns = 5
    outcome = Outcome("zero_sum", win_lose=False)
    action_format = "one word in square brackets: [check], [bet], [call] or [fold]"

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.cards = self.rng.sample(range(4), 3)
        self.actions: list[tuple[int, str]] = []  # (seat, action)
        self.bettor: int | None = None

    def deals(self) -> list[tuple[float, tuple[int, int, int]]]:
        """The 24 deals of three distinct cards from four, each with probability 1/24."""
        return [(1 / 24, (a, b, c)) for a in range(4) for b in range(4) for c in range(4) if len({a, b, c}) == 3]

    def reset_deal(self, deal: tuple[int, int, int]) -> None:
        self.cards = list(deal)
        self.actions = []
        self.bettor = None

    def _next_seat(self) -> int | None:
        if self.bettor is None:
            return len(self.actions) if len(self.actions) < 3 else None
        responded = len(self.actions) - self.bettor - 1  # actions after the bet
        return (self.bettor + 1 + responded) % 3 if responded < 2 else None

    def turn(self) -> Turn | None:
        seat = self._next_seat()
        return None if seat is None else Turn(self.roles[seat])

    def _legal(self) -> list[str]:
        return ["check", "bet"] if self.bettor is None else ["call", "fold"]

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        story = ", ".join(f"{self.roles[s]} chose {a}" for s, a in self.actions) or "no actions yet"
        return [
            system(
                "You are playing three-player Kuhn Poker. The deck is Jack < Queen < King < Ace; each of "
                "three players antes 1 chip and holds one card. In turn, check or bet 1 chip; once someone "
                "bets, each later player calls or folds. The highest card still in wins the pot. "
                f"Answer with {self.action_format}."
            ),
            user(
                f"You are {role}. Your card is the {CARDS[self.cards[seat]]}. History: {story}. "
                f"Legal actions: {', '.join(f'[{a}]' for a in self._legal())}."
            ),
        ]

    def compact_observation(self, role: str) -> str:
        """``P1 K cb:``: the seat, the card's initial, the actions so far as initials (c check/call, b bet, f fold)."""
        seat = self.roles.index(role)
        history = "".join({"check": "c", "call": "c", "bet": "b", "fold": "f"}[a] for _, a in self.actions)
        return f"P{seat} {CARDS[self.cards[seat]][0]} {history}:"

    def parse(self, role: str, text: str) -> str:
        return bracket_word(text, ACTIONS, self._legal(), self.action_format)

    def step(self, role: str, actions: list) -> None:
        seat = self.roles.index(role)
        if actions[0] == "bet":
            self.bettor = seat
        self.actions.append((seat, actions[0]))

    def rewards(self) -> dict[str, float]:
        put = [1.0, 1.0, 1.0]
        folded = set()
        for seat, action in self.actions:
            if action in ("bet", "call"):
                put[seat] += 1
            elif action == "fold":
                folded.add(seat)
        contenders = [s for s in range(3) if s not in folded]
        winner = max(contenders, key=lambda s: self.cards[s])
        pot = sum(put)
        return {r: (pot - put[s] if s == winner else -put[s]) for s, r in enumerate(self.roles)}

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{a}]" for a in self._legal()]

    def expert_action(self, role: str, rng: random.Random) -> str:
        card = self.cards[self.roles.index(role)]
        if self.bettor is None:
            return "[bet]" if card == 3 else "[check]"
        callers = sum(a == "call" for _, a in self.actions)
        return "[call]" if card == 3 or (card == 2 and callers == 0) else "[fold]"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The other two players' cards, redrawn from the three cards ``role`` does not hold."""
        seat = self.roles.index(role)
        unseen = [c for c in range(4) if c != self.cards[seat]]
        rng.shuffle(unseen)
        others = [s for s in range(3) if s != seat]
        for s, c in zip(others, unseen):
            self.cards[s] = c

    def secrets(self, role: str) -> list[str]:
        return [f"Your card is the {CARDS[self.cards[self.roles.index(role)]]}"]
