"""Kuhn Poker (Kuhn 1950, "A simplified two-person poker"), the imperfect-information game of SPIRAL.

Three cards (Jack < Queen < King), one dealt to each player by the seeded RNG; each antes 1 chip.
player_0 acts first: check or bet 1; facing a bet a player calls or folds; check-check and bet-call go to
showdown, the higher card taking the pot. Rewards are the chips won: +-1 or +-2.

The expert plays a Nash equilibrium, the one-parameter family of Kuhn (1950) as tabulated in
https://en.wikipedia.org/wiki/Kuhn_poker (player_0 bets a Jack with probability alpha in [0, 1/3], bets a
King with 3*alpha, calls a bet with a Queen with alpha + 1/3; player_1 bets a checked King always and a
checked Jack with 1/3, calls with a Queen with 1/3). Under it player_0 wins -1/18 per hand on average.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfplay.games.core import Game, Outcome, Turn, bracket_word, system, user
from selfplay.games.registry import register

CARDS = ("Jack", "Queen", "King")
ACTIONS = ("check", "bet", "call", "fold")
TERMINAL = {"cc", "bc", "bf", "cbc", "cbf"}  # histories as first letters: c(heck) b(et) c(all) f(old)
ALPHA = 1 / 6


def legal(history: str) -> list[str]:
    """Legal actions after ``history`` (a string of action initials)."""
    return ["call", "fold"] if history.endswith("b") else ["check", "bet"]


def nash_probabilities(card: int, history: str, alpha: float = ALPHA) -> dict[str, float]:
    """Action probabilities of the Kuhn equilibrium for the player holding ``card`` (0=J, 1=Q, 2=K)."""
    if history == "":  # player_0 opens
        p_bet = (alpha, 0.0, 3 * alpha)[card]
        return {"bet": p_bet, "check": 1 - p_bet}
    if history == "c":  # player_1 after a check
        p_bet = (1 / 3, 0.0, 1.0)[card]
        return {"bet": p_bet, "check": 1 - p_bet}
    if history == "b":  # player_1 facing a bet
        p_call = (0.0, 1 / 3, 1.0)[card]
        return {"call": p_call, "fold": 1 - p_call}
    if history == "cb":  # player_0 facing a bet after checking
        p_call = (0.0, alpha + 1 / 3, 1.0)[card]
        return {"call": p_call, "fold": 1 - p_call}
    raise ValueError(f"no decision after history {history!r}")


@register
@dataclass
class KuhnPoker(Game):
    name = "kuhn_poker"
    description = "Kuhn Poker: 3 cards, hidden hands, check/bet/call/fold; chips won, +-1 or +-2."
    roles = ("player_0", "player_1")
    reward_range = (-2.0, 2.0)
    max_turns = 3
    outcome = Outcome("zero_sum", win_lose=False)  # chips: a "win" of one chip and of two are not the same
    action_format = "one word in square brackets: [check], [bet], [call] or [fold]"
    alpha: float = ALPHA  # the expert's member of the equilibrium family: player_0 bets a Jack with alpha, in [0, 1/3]

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1 / 3:
            raise ValueError(f"kuhn_poker option alpha={self.alpha}: expected a value in [0, 1/3]")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.reset_deal(tuple(self.rng.sample(range(3), 2)))  # chance event: the deal

    def deals(self) -> list[tuple[float, tuple[int, int]]]:
        """The six deals of two distinct cards, each with probability 1/6."""
        return [(1 / 6, (a, b)) for a in range(3) for b in range(3) if a != b]

    def reset_deal(self, deal: tuple[int, int]) -> None:
        self.cards = list(deal)
        self.history = ""
        self.actions: list[str] = []

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The opponent's card, redrawn from the two cards ``role`` does not hold."""
        seat = self.roles.index(role)
        self.cards[1 - seat] = rng.choice([c for c in range(3) if c != self.cards[seat]])

    def turn(self) -> Turn | None:
        if self.history in TERMINAL:
            return None
        return Turn(self.roles[len(self.history) % 2])

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        story = ", ".join(f"{self.roles[i % 2]} chose {a}" for i, a in enumerate(self.actions)) or "no actions yet"
        return [
            system(
                "You are playing Kuhn Poker. The deck is Jack < Queen < King; each player antes 1 chip and "
                "holds one card. Check or bet 1 chip; facing a bet, call or fold. At showdown the higher "
                f"card wins the pot. Answer with {self.action_format}."
            ),
            user(
                f"You are {role}. {self._card_phrase(seat)}. History: {story}. "
                f"Legal actions: {', '.join(f'[{a}]' for a in legal(self.history))}."
            ),
        ]

    def parse(self, role: str, text: str) -> str:
        return bracket_word(text, ACTIONS, legal(self.history), self.action_format)

    def step(self, role: str, actions: list) -> None:
        self.actions.append(actions[0])
        self.history += {"check": "c", "call": "c", "bet": "b", "fold": "f"}[actions[0]]

    def rewards(self) -> dict[str, float]:
        h = self.history
        if h.endswith("f"):  # the folder loses the ante plus any chips it already put in
            folder = len(h) - 1
            pot_share = 1.0
            winner = 1 - folder % 2
        else:
            pot_share = 2.0 if "b" in h else 1.0
            winner = 0 if self.cards[0] > self.cards[1] else 1
        return {r: pot_share if i == winner else -pot_share for i, r in enumerate(self.roles)}

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{a}]" for a in legal(self.history)]

    def expert_action(self, role: str, rng: random.Random) -> str:
        probs = self.expert_policy(role)
        actions = list(probs)
        return rng.choices(actions, weights=[probs[a] for a in actions])[0]

    def expert_policy(self, role: str) -> dict[str, float]:
        """The equilibrium's probabilities of each legal action text for ``role``'s card and the history."""
        return {
            f"[{a}]": p
            for a, p in nash_probabilities(self.cards[self.roles.index(role)], self.history, self.alpha).items()
        }

    def compact_observation(self, role: str) -> str:
        """``P0 K cb:``: the seat, the card's initial, the betting so far as initials (c check/call, b bet, f fold)."""
        seat = self.roles.index(role)
        return f"P{seat} {CARDS[self.cards[seat]][0]} {self.history}:"

    def secrets(self, role: str) -> list[str]:
        return [self._card_phrase(self.roles.index(role))]

    def _card_phrase(self, seat: int) -> str:
        return f"Your card is the {CARDS[self.cards[seat]]}"
