"""A free-text negotiation (after SPIRAL's / TextArena's Simple Negotiation): general-sum, private values.

Two players hold public inventories of Wood and Gold but value them privately (base values 10 and 30, each
player's drawn within +-20%). They alternate for ``rounds`` turns; each turn is free text around exactly one
bracketed action: ``[Offer: 2 Wood -> 1 Gold]`` (give what is left of the arrow, receive what is right of it),
``[Accept]`` or ``[Deny]`` (only with an offer pending for you) or ``[Pass]``. An accepted offer is executed at once.
The text around the action is shown to the other player as your message. Each player's reward is the change in
the value of its own inventory at its own values, divided by its starting value (general-sum: good trades help
both). The expert accepts offers that raise its value, and offers one unit of what it values less, relative to the
base values, for one unit of the other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from selfplay.games.core import Failure, Game, InvalidAction, Outcome, Turn, system, user
from selfplay.games.registry import register

RESOURCES = ("Wood", "Gold")
BASE = {"Wood": 10, "Gold": 30}
_OFFER = re.compile(r"\[offer:\s*([^\]]*?)\s*->\s*([^\]]*?)\s*\]", re.IGNORECASE)
_TOKEN = re.compile(r"\[(offer:[^\]]*|accept|deny|pass)\]", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(\d+)\s+(wood|gold)\s*$", re.IGNORECASE)


def _bundle(text: str) -> dict[str, int]:
    """``"2 Wood, 1 Gold"`` as {"Wood": 2, "Gold": 1}; ValueError on anything else."""
    out = {r: 0 for r in RESOURCES}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _ITEM.match(part)
        if not match:
            raise ValueError(part)
        out[match.group(2).capitalize()] += int(match.group(1))
    return out


@register
@dataclass
class Negotiation(Game):
    name = "negotiation"
    description = "Free-text negotiation over Wood and Gold with private values; general-sum value gains."
    roles = ("player_0", "player_1")
    reward_range = (-1.0, 3.0)
    max_turns = 12
    outcome = Outcome("general_sum", win_lose=False)
    action_format = "a message with one of [Offer: 2 Wood -> 1 Gold], [Accept], [Deny] or [Pass]"
    rounds: int = 6

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= self.max_turns:
            raise ValueError(f"negotiation rounds={self.rounds}: expected 1 to {self.max_turns}")

    def reset(self, seed: int) -> None:
        self.seed_rng(seed)
        self.inventory = [{r: self.rng.randint(2, 8) for r in RESOURCES} for _ in self.roles]
        self.values = [{r: round(BASE[r] * self.rng.uniform(0.8, 1.2), 1) for r in RESOURCES} for _ in self.roles]
        self.start = [self._worth(i) for i in range(2)]
        self.pending: tuple[int, dict, dict] | None = None  # (offering seat, gives, receives)
        self.log: list[str] = []
        self.turns = 0

    def _worth(self, seat: int) -> float:
        return sum(self.inventory[seat][r] * self.values[seat][r] for r in RESOURCES)

    def turn(self) -> Turn | None:
        return None if self.turns >= self.rounds else Turn(self.roles[self.turns % 2])

    def observe(self, role: str) -> list:
        seat = self.roles.index(role)
        mine, theirs = self.inventory[seat], self.inventory[1 - seat]
        pending = ""
        if self.pending and self.pending[0] != seat:
            _, gives, gets = self.pending
            pending = (
                f" Pending offer to you: they give {self._text(gives)} for your {self._text(gets)}; "
                "answer [Accept] or [Deny]."
            )
        return [
            system(
                "You are negotiating a trade of Wood and Gold. Each player values the resources privately; "
                "your reward is how much the value of your own inventory grows, at your values. "
                f"{self.rounds} turns in all. Answer with {self.action_format}."
            ),
            user(
                f"You are {role}. {self._values_phrase(seat)}. You hold {self._text(mine)}; they hold "
                f"{self._text(theirs)}. Messages so far: {' | '.join(self.log) or 'none'}.{pending}"
            ),
        ]

    def _values_phrase(self, seat: int) -> str:
        return "Your values: " + ", ".join(f"{r} {self.values[seat][r]:g}" for r in RESOURCES)

    @staticmethod
    def _text(bundle: dict[str, int]) -> str:
        return ", ".join(f"{n} {r}" for r, n in bundle.items() if n) or "nothing"

    def parse(self, role: str, text: str) -> tuple:
        seat = self.roles.index(role)
        tokens = _TOKEN.findall(text)
        if len(tokens) != 1:
            raise InvalidAction(Failure.PARSE_ERROR, f"expected exactly one of {self.action_format}, got {text[:60]!r}")
        token = tokens[0].lower()
        message = _TOKEN.sub("", text).strip()[:200]
        if token in ("accept", "deny"):
            if not self.pending or self.pending[0] == seat:
                raise InvalidAction(Failure.ILLEGAL, f"[{token.capitalize()}] needs an offer pending for you")
            return token, message
        if token == "pass":
            return "pass", message
        match = _OFFER.search(text)
        try:
            gives, gets = _bundle(match.group(1)), _bundle(match.group(2))
        except (AttributeError, ValueError):
            raise InvalidAction(Failure.PARSE_ERROR, "an offer reads [Offer: 2 Wood -> 1 Gold]") from None
        if not any(gives.values()) or not any(gets.values()):
            raise InvalidAction(Failure.ILLEGAL, "an offer gives something and asks for something")
        if any(gives[r] > self.inventory[seat][r] for r in RESOURCES) or any(
            gets[r] > self.inventory[1 - seat][r] for r in RESOURCES
        ):
            raise InvalidAction(Failure.ILLEGAL, "an offer can only move resources the players hold")
        return "offer", message, gives, gets

    def step(self, role: str, actions: list) -> None:
        seat = self.roles.index(role)
        kind, message, *rest = actions[0]
        if kind == "accept":
            giver, gives, gets = self.pending
            for r in RESOURCES:
                self.inventory[giver][r] += gets[r] - gives[r]
                self.inventory[1 - giver][r] += gives[r] - gets[r]
        if kind in ("accept", "deny"):
            self.pending = None
        if kind == "offer":
            self.pending = (seat, *rest)
        said = f' "{message}"' if message else ""
        self.log.append(
            f"{role}{said} [{kind}" + (f": {self._text(rest[0])} -> {self._text(rest[1])}" if rest else "") + "]"
        )
        self.turns += 1

    def rewards(self) -> dict[str, float]:
        return {r: (self._worth(i) - self.start[i]) / self.start[i] for i, r in enumerate(self.roles)}

    def random_action(self, role: str, rng: random.Random) -> str:
        seat = self.roles.index(role)
        if self.pending and self.pending[0] != seat:
            return rng.choice(["[Accept]", "[Deny]"])
        give, get = rng.sample(RESOURCES, 2)
        if self.inventory[seat][give] and self.inventory[1 - seat][get] and rng.random() < 0.7:
            return f"How about this? [Offer: 1 {give} -> 1 {get}]"
        return "[Pass]"

    def expert_action(self, role: str, rng: random.Random) -> str:
        seat = self.roles.index(role)
        if self.pending and self.pending[0] != seat:
            _, gives, gets = self.pending
            gain = sum((gives[r] - gets[r]) * self.values[seat][r] for r in RESOURCES)
            return "Deal. [Accept]" if gain > 0 else "No, thanks. [Deny]"
        relative = {r: self.values[seat][r] / BASE[r] for r in RESOURCES}
        give, get = sorted(RESOURCES, key=relative.get)  # trade away what I value less, at the base exchange rate
        k, m = (round(BASE[get] / BASE[give]), 1) if BASE[give] < BASE[get] else (1, round(BASE[give] / BASE[get]))
        if self.inventory[seat][give] >= k and self.inventory[1 - seat][get] >= m:
            return f"I can spare some {give}. [Offer: {k} {give} -> {m} {get}]"
        return "[Pass]"

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """The other player's private values, redrawn."""
        other = 1 - self.roles.index(role)
        self.values[other] = {r: round(BASE[r] * rng.uniform(0.8, 1.2), 1) for r in RESOURCES}

    def secrets(self, role: str) -> list[str]:
        return [self._values_phrase(self.roles.index(role))]

    def info(self) -> dict:
        return {
            "trades": sum("[accept" in line for line in self.log),
            "gain": [round(self._worth(i) - self.start[i], 2) for i in range(2)],
        }
