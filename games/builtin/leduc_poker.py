"""Leduc Hold'em (Southey et al. 2005, "Bayes' Bluff"), with OpenSpiel's rules (``leduc_poker``, two players).

Six cards, two each of Jack < Queen < King. Each player antes 1 chip and is dealt one private card; a public
card is revealed after the first betting round. Two betting rounds, player_0 acting first in each: check or
raise when nothing is owed, fold, call or raise when facing a raise; raises are 2 chips in the first round and
4 in the second, at most two raises per round. A round ends when both have checked or a raise is called. At
showdown a player whose card pairs the public card wins, else the higher card; equal ranks split the pot.
Rewards are the chips won (OpenSpiel's returns: money at the end minus money at the start, at most 13).

All chance is one deal made at reset (the public card is dealt then and shown after round 1), so the game can
be enumerated exactly (``games.exact``): uniform random play has NashConv 4.7472 as in OpenSpiel. The expert
plays an approximate equilibrium computed by CFR+ (``python -m selfplay.games.leduc_cfr`` regenerates
``leduc_expert.json`` and prints its exploitability).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from selfplay.games.core import Game, Outcome, Turn, bracket_word, system, user
from selfplay.games.registry import register

RANKS = ("Jack", "Queen", "King")
RAISE = (2, 4)  # raise size in round 1 and round 2
MAX_RAISES = 2
EXPERT_TABLE = Path(__file__).with_name("leduc_expert.json")


def rank(card: int) -> int:
    """Cards 0..5 are J J Q Q K K."""
    return card // 2


def hand_strength(card: int, public: int) -> int:
    """Showdown rank: a pair with the public card beats any unpaired hand, then the higher card."""
    return 10 + rank(card) if rank(card) == rank(public) else rank(card)


@lru_cache(maxsize=1)
def expert_table() -> dict[str, dict[str, float]]:
    """The CFR+ average strategy, keyed by ``LeducPoker.info_key``."""
    return json.loads(EXPERT_TABLE.read_text())["policy"]


@register
@dataclass
class LeducPoker(Game):
    name = "leduc_poker"
    description = "Leduc Hold'em: 6 cards, a private and a public card, two betting rounds; chips won, at most 13."
    roles = ("player_0", "player_1")
    reward_range = (-13.0, 13.0)
    max_turns = 8
    outcome = Outcome("zero_sum", win_lose=False)
    check_seeds = 300
    action_format = "one word in square brackets: [check], [call], [raise] or [fold]"

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.reset_deal(tuple(self.rng.sample(range(6), 3)))

    def deals(self) -> list[tuple[float, tuple[int, int, int]]]:
        """Every (player_0 card, player_1 card, public card) of three distinct cards, each 1/120."""
        return [(1 / 120, (a, b, c)) for a in range(6) for b in range(6) for c in range(6) if len({a, b, c}) == 3]

    def reset_deal(self, deal: tuple[int, int, int]) -> None:
        self.cards, self.public = list(deal[:2]), deal[2]
        self.rounds: list[list[str]] = [[]]  # the actions of each betting round
        self.put = [1, 1]  # chips each player has in the pot (the antes)
        self.folded: int | None = None
        self.actor = 0

    # -- rules ---------------------------------------------------------------------------------------------
    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The opponent's card, and the public card while it is still face down, redrawn from the cards ``role``
        has not seen."""
        seat = self.roles.index(role)
        seen = {self.cards[seat]} | ({self.public} if self.round == 1 else set())
        unseen = [c for c in range(6) if c not in seen]
        rng.shuffle(unseen)
        self.cards[1 - seat] = unseen[0]
        if self.round == 0:
            self.public = unseen[1]

    @property
    def round(self) -> int:
        return len(self.rounds) - 1

    def _owed(self) -> int:
        return self.put[1 - self.actor] - self.put[self.actor]

    def _raises(self) -> int:
        return self.rounds[-1].count("raise")

    def _round_over(self) -> bool:
        acts = self.rounds[-1]
        return acts[-2:] == ["check", "check"] or (bool(acts) and acts[-1] == "call")

    def legal(self) -> list[str]:
        facing = self._owed() > 0
        out = ["fold", "call"] if facing else ["check"]
        return out + (["raise"] if self._raises() < MAX_RAISES else [])

    def turn(self) -> Turn | None:
        if self.folded is not None or (self.round == 1 and self._round_over()):
            return None
        return Turn(self.roles[self.actor])

    def step(self, role: str, actions: list) -> None:
        action = actions[0]
        self.rounds[-1].append(action)
        if action == "fold":
            self.folded = self.actor
            return
        if action in ("call", "raise"):
            self.put[self.actor] += self._owed()
        if action == "raise":
            self.put[self.actor] += RAISE[self.round]
        if self._round_over() and self.round == 0:
            self.rounds.append([])
            self.actor = 0
        else:
            self.actor = 1 - self.actor

    def rewards(self) -> dict[str, float]:
        if self.folded is not None:
            winner = 1 - self.folded
            won = [-self.put[0], -self.put[1]]
            won[winner] = self.put[1 - winner]
        else:
            s0, s1 = (hand_strength(c, self.public) for c in self.cards)
            share = 0 if s0 == s1 else (1 if s0 > s1 else -1)
            won = [share * self.put[1], -share * self.put[0]]
        return {r: float(w) for r, w in zip(self.roles, won)}

    # -- what players see ----------------------------------------------------------------------------------
    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        story = "; ".join(
            f"round {i + 1}: " + (", ".join(acts) or "no actions yet") for i, acts in enumerate(self.rounds)
        )
        board = (
            f"The public card is the {RANKS[rank(self.public)]}"
            if self.round == 1
            else "The public card is not shown yet"
        )
        return [
            system(
                "You are playing Leduc Hold'em. Six cards: two Jacks, two Queens, two Kings. Each player antes 1 "
                "chip and holds one private card; a public card is shown after the first betting round. Check or "
                "raise (2 chips in round 1, 4 in round 2, at most two raises a round); facing a raise, call, raise "
                "or fold. At showdown pairing the public card wins, else the higher card; equal ranks split the "
                f"pot. Answer with {self.action_format}."
            ),
            user(
                f"You are {role}. {self._card_phrase(seat)}. {board}. Chips in the pot: yours {self.put[seat]}, "
                f"opponent's {self.put[1 - seat]}. Betting so far: {story}. "
                f"Legal actions: {', '.join(f'[{a}]' for a in self.legal())}."
            ),
        ]

    def compact_observation(self, role: str) -> str:
        """One line a small model can read: own card, public card (or ?), each round's actions as initials."""
        seat = self.roles.index(role)
        public = "JQK"[rank(self.public)] if self.round == 1 else "?"
        bets = "/".join("".join(a[0] for a in acts) for acts in self.rounds)
        return f"P{seat} {'JQK'[rank(self.cards[seat])]}{public} {bets}:"

    def parse(self, role: str, text: str) -> str:
        return bracket_word(text, ("check", "call", "raise", "fold"), self.legal(), self.action_format)

    def legal_actions(self, role: str) -> list[str]:
        return [f"[{a}]" for a in self.legal()]

    def secrets(self, role: str) -> list[str]:
        return [self._card_phrase(self.roles.index(role))]

    def _card_phrase(self, seat: int) -> str:
        return f"Your private card is the {RANKS[rank(self.cards[seat])]}"

    # -- the expert ----------------------------------------------------------------------------------------
    def info_key(self, role: str) -> str:
        """What ``role`` knows, compactly: its card's rank, the public rank once shown, the betting so far."""
        seat = self.roles.index(role)
        public = RANKS[rank(self.public)][0] if self.round == 1 else "-"
        return f"{RANKS[rank(self.cards[seat])][0]}|{public}|" + "/".join(",".join(acts) for acts in self.rounds)

    def expert_policy(self, role: str) -> dict[str, float]:
        """The CFR+ average strategy at this information state (uniform where the table has none)."""
        probs = expert_table().get(self.info_key(role))
        legal = self.legal_actions(role)
        return {a: probs.get(a, 0.0) for a in legal} if probs else {a: 1 / len(legal) for a in legal}

    def expert_action(self, role: str, rng: random.Random) -> str:
        probs = self.expert_policy(role)
        return rng.choices(list(probs), weights=list(probs.values()))[0]
