"""Playing many games at once.

Each scheduling round collects the pending decisions of every live game, groups them by agent, and calls
each agent once with its whole batch; an LLM agent turns that batch into one generation call. A turn with
``samples=K`` is one request for K completions. Invalid answers go through the game's invalid-action
policy (re-prompt with the error, then forfeit / penalty / random move), every attempt recorded. An
exception inside one game ends that episode with status ``error``; the other games go on.
"""

from __future__ import annotations

import math
import numbers
import random
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from selfplay.agents.base import Agent, Completion, Request
from selfplay.arena.matches import OPENING, Match
from selfplay.arena.records import Attempt, Episode, RecordStore
from selfplay.games.core import Failure, Game, InvalidAction, Message, observation_error, outcome_of, turn_error


@dataclass(eq=False)
class _Slot:
    """One sample of the current turn, through its attempts."""

    messages: list[Message]
    role: str
    attempts: int = 0
    action: Any = None
    done: bool = False


class _LiveGame:
    """One episode in flight: its game instance, the current turn's slots and the growing record."""

    def __init__(self, game: Game, match: Match, options: dict[str, Any]):
        self.game = game
        self.episode = Episode(
            game=game.name,
            seed=match.seed,
            agents=dict(match.agents),
            options=options,
            meta={**match.meta, "outcome": outcome_of(game).record(game.reward_range)},
        )
        self.fallback_rng = random.Random(match.seed ^ 0x5EED)
        self.penalties = {r: 0.0 for r in game.roles}
        self.turn = None
        self.slots: list[_Slot] = []
        self.turn_steps: list[list[Attempt]] = []
        self.opening = match.opening
        if match.opening:
            self.episode.meta["opening"] = match.opening
        self.clock = time.perf_counter()
        self._guard(lambda: (game.reset(match.seed), self._begin_turn()))

    @property
    def finished(self) -> bool:
        return self.episode.status != "running"

    def requests(self) -> list[tuple[Request, list[_Slot]]]:
        """Pending requests of this game: fresh samples share one request, each retry is its own."""
        out = []
        for role in self.turn.roles:
            fresh = [s for s in self.slots if s.role == role and not s.done and s.attempts == 0]
            retries = [s for s in self.slots if s.role == role and not s.done and s.attempts > 0]
            if not fresh and not retries:
                continue
            legal, compact, slot = self.game.legal_actions(role), self._compact[role], self._slot[role]
            seed = self.episode.seed  # the match's: scripted agents draw this game's moves from it
            if fresh:
                out.append((Request(self.game, role, fresh[0].messages, len(fresh), legal, compact, seed, slot), fresh))
            out += [(Request(self.game, role, s.messages, 1, legal, compact, seed, slot), [s]) for s in retries]
        return out

    def receive(self, slot: _Slot, completion: Completion, failure: tuple[Failure, str] | None, seconds: float) -> None:
        """Record one completion for ``slot``: parse it, and re-prompt or fall back when it is invalid."""
        role, policy = slot.role, self.game.invalid_policy
        index = self.slots.index(slot)
        step = Attempt(
            turn=self.episode.num_turns,
            role=role,
            sample=0 if self.turn.simultaneous else index,
            attempt=slot.attempts,
            agent=self.episode.agents[role],
            messages=slot.messages,
            text=completion.text,
            prompt_ids=completion.prompt_ids,
            completion_ids=completion.completion_ids,
            logprobs=completion.logprobs,
            allowed=completion.allowed,
            temperature=completion.temperature,
            seconds=seconds,
            read=completion.meta.get("read"),
        )
        self.turn_steps[index].append(step)
        slot.attempts += 1
        if failure is None:
            try:
                slot.action, slot.done, step.action = self.game.parse(role, completion.text), True, completion.text
                return
            except InvalidAction as exc:
                failure = (exc.code, exc.message)
        step.failure, step.error = failure[0].value, failure[1]
        step.reward = policy.penalty
        if slot.attempts <= policy.retries:
            slot.messages = [
                *slot.messages,
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"Invalid answer ({failure[0].value}): {failure[1]}. "
                    f"Answer again with {self.game.action_format}.",
                },
            ]
            return
        step.fallback = policy.fallback
        slot.done = True
        if policy.fallback == "forfeit":
            if len(self.slots) == 1 or self.turn.simultaneous:
                self._finish("forfeit", self.game.forfeit_rewards(role))
            return  # in a samples turn the sample just stays invalid: step() receives None for it
        if policy.fallback == "penalty":
            self.penalties[role] += policy.penalty
        step.action, slot.action = self._random_action(role)

    def advance(self) -> None:
        """Apply the turn once all its samples are settled, and set up the next one."""
        if self.finished or not all(s.done for s in self.slots):
            return
        self._guard(self._apply_turn)

    def _apply_turn(self) -> None:
        if self.turn.simultaneous:
            self.game.step_together({s.role: s.action for s in self.slots})
            sample_rewards = None
        else:
            sample_rewards = self.game.step(self.turn.role, [s.action for s in self.slots])
        if sample_rewards is not None:
            if len(sample_rewards) != len(self.slots):
                raise ValueError(
                    f"{self.game.name}.step returned {len(sample_rewards)} sample rewards for {len(self.slots)} samples"
                )
            for steps, reward in zip(self.turn_steps, sample_rewards):
                if steps[-1].failure is None:
                    steps[-1].reward = float(reward)
        self.episode.steps.extend(s for steps in self.turn_steps for s in steps)
        self.turn_steps = []
        self.episode.num_turns += 1
        self._begin_turn()

    def _begin_turn(self) -> None:
        self.turn = self.game.turn()
        if self.turn is not None and (error := turn_error(self.game, self.turn)):
            raise ValueError(error)
        if self.turn is None:
            self._finish("done", self.game.rewards())
            return
        if self.episode.num_turns >= self.game.max_turns:
            self._finish("truncated", self.game.truncation_rewards())
            return
        if self.episode.num_turns < self.opening and self.turn.samples == 1 and not self.turn.simultaneous:
            self._random_move()
            return
        # every observation of a simultaneous turn is taken here, before any of its roles has moved
        views = {role: self.game.observe(role) for role in self.turn.roles}
        for role, view in views.items():
            if error := observation_error(self.game, role, view):
                raise ValueError(error)
        self._compact = {role: self.game.compact_observation(role) for role in self.turn.roles}
        self._slot = {role: self.game.answer_slot(role) for role in self.turn.roles}
        self.slots = [_Slot(views[role], role) for role in self.turn.roles for _ in range(self.turn.samples)]
        self.turn_steps = [[] for _ in self.slots]

    def _random_action(self, role: str) -> tuple[str, Any]:
        """A uniformly random legal action from the game's seeded fallback RNG: (its text, the parsed action)."""
        text = self.game.random_action(role, self.fallback_rng)
        return text, self.game.parse(role, text)

    def _random_move(self) -> None:
        """One opening move: a uniformly random legal action, recorded as the ``opening`` agent's."""
        role = self.turn.role
        text, action = self._random_action(role)
        self.game.step(role, [action])
        self.episode.steps.append(
            Attempt(
                turn=self.episode.num_turns,
                role=role,
                sample=0,
                attempt=0,
                agent=OPENING,
                messages=[],
                text=text,
                action=text,
            )
        )
        self.episode.num_turns += 1
        self._begin_turn()

    def _finish(self, status: str, rewards: dict[str, float]) -> None:
        ep = self.episode
        check_rewards(
            self.game,
            rewards,
            {"done": "rewards()", "truncated": "truncation_rewards()"}.get(status, "forfeit_rewards()"),
        )
        if status == "forfeit":  # the forfeiting turn never reached step(): keep its attempts
            ep.steps.extend(s for steps in self.turn_steps for s in steps)
            ep.num_turns += 1
        ep.rewards = {r: float(rewards[r]) + self.penalties[r] for r in self.game.roles}
        for s in ep.steps:  # samples without their own reward get their role's final reward
            if s.reward is None and s.failure is None:
                s.reward = ep.rewards[s.role]
        ep.status, ep.seconds = status, time.perf_counter() - self.clock
        info = self.game.info()
        if info:
            ep.meta["info"] = info

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one broken game must not stop the others
            self.episode.steps.extend(s for steps in self.turn_steps for s in steps)
            self.episode.status, self.episode.error = "error", traceback.format_exc(limit=8)
            self.episode.seconds = time.perf_counter() - self.clock


def check_rewards(game: Game, rewards: Any, source: str = "rewards()") -> None:
    """ValueError unless ``rewards`` names every role of ``game`` once with a finite number within its
    ``reward_range`` (a game's bug stops its episode, recorded as an error, rather than reaching the trainer)."""
    if not isinstance(rewards, dict) or set(rewards) != set(game.roles):
        named = sorted(rewards) if isinstance(rewards, dict) else type(rewards).__name__
        raise ValueError(
            f"{game.name}.{source} returned {named}: expected a reward for each role {', '.join(game.roles)}"
        )
    low, high = game.reward_range
    for role, value in rewards.items():
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or not low - 1e-6 <= value <= high + 1e-6:
            raise ValueError(
                f"{game.name}.{source} gave {role} {value!r}: expected a finite number within "
                f"reward_range {game.reward_range}"
            )


def _call_agent(agent: Agent, requests: list[Request]) -> tuple[list[list[Completion]] | None, str | None, float]:
    start = time.perf_counter()
    try:
        results = agent.act(requests)
        if len(results) != len(requests) or any(len(c) != r.samples for c, r in zip(results, requests)):
            raise ValueError(f"agent {agent.name!r} returned a batch of the wrong shape")
        return results, None, time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a crashing agent becomes AGENT_ERROR attempts
        return None, f"agent {agent.name!r} raised {type(exc).__name__}: {exc}", time.perf_counter() - start


def play(
    make_game: Callable[[], Game],
    matches: Sequence[Match],
    agents: dict[str, Agent],
    *,
    store: RecordStore | None = None,
    concurrency: int = 256,
    progress: bool | str = True,
    options: dict[str, Any] | None = None,
) -> list[Episode]:
    """Play ``matches`` with up to ``concurrency`` games live at once; write each finished episode to ``store``.

    Returns the episodes in match order.
    """
    missing = {name for m in matches for name in m.agents.values()} - set(agents)
    if missing:
        raise ValueError(f"matches name unknown agent(s) {sorted(missing)}: known {sorted(agents)}")
    # agents that cannot take a seat say so before any game: an expert of a game without one, a checkpoint without
    # weights for the role
    seats = sorted(
        {(name, role) for m in matches for role, name in m.agents.items() if hasattr(agents[name], "check_seat")}
    )
    probe = make_game() if seats else None  # built as the games will be, with their options
    for name, role in seats:
        agents[name].check_seat(probe, role)
    queue = list(enumerate(matches))[::-1]
    live: dict[int, _LiveGame] = {}
    done: dict[int, Episode] = {}
    bar = tqdm(
        total=len(matches),
        desc=progress if isinstance(progress, str) else "games",
        unit="game",
        disable=None if progress else True,
        dynamic_ncols=True,
        leave=False,
    )  # None: off when not a terminal
    with ExitStack() as sessions:  # weights do not change during a play: agents may reuse work across calls
        for agent in {id(a): a for a in agents.values()}.values():
            if hasattr(agent, "session"):
                sessions.enter_context(agent.session())
        while queue or live:
            while queue and len(live) < concurrency:
                index, match = queue.pop()
                extra = match.meta.get("game_options") or {}  # per-match options (e.g. a curriculum's category)
                live[index] = _LiveGame(
                    make_game(**extra) if extra else make_game(), match, {**(options or {}), **extra}
                )
            _round(live, agents)
            finished = [i for i, g in live.items() if g.finished]
            if store is not None and finished:
                store.add([live[i].episode for i in finished])
            for i in finished:
                done[i] = live.pop(i).episode
            bar.update(len(finished))
    bar.close()
    return [done[i] for i in range(len(matches))]


def _round(live: dict[int, _LiveGame], agents: dict[str, Agent]) -> None:
    """One scheduling round: every agent answers all of its pending requests in one call.

    Requests are grouped by agent object, so names that share one agent (mirror self-play) share the call.
    """
    by_agent: dict[int, list[tuple[_LiveGame, Request, list[_Slot]]]] = {}
    for g in live.values():
        if not g.finished:
            pending: list[tuple[Request, list[_Slot]]] = []
            g._guard(lambda: pending.extend(g.requests()))  # legal_actions / compact_observation may raise
            for request, slots in pending if not g.finished else []:
                by_agent.setdefault(id(agents[g.episode.agents[request.role]]), []).append((g, request, slots))
    objects = {id(a): a for a in agents.values()}
    for key, pending in by_agent.items():
        results, error, seconds = _call_agent(objects[key], [req for _, req, _ in pending])
        per_item = seconds / max(1, len(pending))
        for i, (g, _, slots) in enumerate(pending):
            for j, slot in enumerate(slots):
                if g.finished:
                    break
                completion = Completion("") if results is None else results[i][j]
                failure = (Failure.AGENT_ERROR, error) if results is None else None
                if failure is None and completion.meta.get("failure"):  # e.g. a served model that timed out
                    failure = (Failure(completion.meta["failure"]), str(completion.meta.get("error", "")))
                g._guard(lambda: g.receive(slot, completion, failure, per_item))
    for g in live.values():
        g.advance()
