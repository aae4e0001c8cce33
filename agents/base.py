"""The agent interface: a batch of requests in, a batch of completions out.

Scripted and LLM agents implement the same ``act``; the arena calls each agent once per step with every
pending turn it has across all live games, so an LLM agent can put them into one generation call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from selfplay.games.core import Game, Message

WEIGHT_MODES = ("shared", "lora", "clone")  # how roles hold weights (agents.weights); here so configs need no torch


@dataclass
class Request:
    """One pending decision: what the role sees, and how many samples the game wants of it."""

    game: Game  # scripted agents read the game (only their role's information); LLM agents only messages
    role: str
    messages: list[Message]
    samples: int = 1
    legal_actions: list[str] | None = None
    compact: str | None = None  # the game's one-line observation, for agents whose observer is compact
    seed: int | None = None  # the match's seed: scripted agents draw each game's moves from their own stream of it
    slot: str | None = None  # the game's answer slot: model agents continue it (``Game.answer_slot``)


@dataclass
class Completion:
    """One sampled answer; LLM agents also report exactly which tokens were sampled and their log-probs."""

    text: str
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    allowed: list[list[int] | None] | None = None  # constrained decoding: the token ids allowed at each step
    temperature: float | None = None  # the sampling temperature the logprobs are taken at (model agents)
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """Anything with a name that answers a batch of requests with ``samples`` completions each."""

    name: str

    def act(self, requests: list[Request]) -> list[list[Completion]]:
        """Return, for each request, a list of ``request.samples`` completions."""
        ...
