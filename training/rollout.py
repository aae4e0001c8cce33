"""Rollouts: each step's games, played on this rank, turned into training samples.

``Rollouts.collect(step)`` hides the machinery of making a batch (nanochat's ``get_batch``): who plays whom
(mirror self-play, a frozen snapshot from the opponent pool, a scripted opponent, or the curriculum's opponent
arm), which category each game is drawn from (the curriculum), refill rounds while difficulty filtering left the
batch short, and the options a game derives from the last step's episodes (its context hook). ``Rollouts.observe``
takes the step's statistics summed over ranks and moves all of that on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from selfplay.agents.specs import build_agent
from selfplay.agents.weights import frozen_copy
from selfplay.arena import rundir
from selfplay.arena.matches import Match
from selfplay.arena.play import play
from selfplay.arena.records import Episode, RecordStore
from selfplay.games.core import Game
from selfplay.training import seeds
from selfplay.training.config import Opponents, TrainConfig
from selfplay.training.curriculum import difficulty_filter, make_curriculum
from selfplay.training.distributed import full_parameters, rank_slice, sum_scalar
from selfplay.training.learner import Learner, group_agent, sampling_config
from selfplay.training.names import (
    AVERAGE,
    LEARNER,
    MIRROR,
    OPPONENT,
    POOL,
    SCRIPTED,
    agent_name,
    arm_name,
    arm_options,
    scripted_name,
    seat_name,
)
from selfplay.training.pool import OpponentPool
from selfplay.training.stats import StepStats


def plan_matches(
    roles: Sequence[str],
    group_of: Callable[[str], str],
    *,
    step: int,
    seed: int,
    games: range,
    opponents: Opponents,
    pool_ready: bool,
    arms: Mapping[int, tuple[str, Any]] | Sequence[tuple[str, Any]] | None = None,
    opening: int = 0,
    learner_roles: Sequence[str] | None = None,
) -> list[Match]:
    """Matches ``games`` (indices into this step's global list: each rank plays its own slice).

    Game j is decided by its own RNG, so the global list is the same however it is split across ranks:
    mirror self-play (the learner's weights in every free role, the ``learner_roles`` among them trained), or the
    learner in learning seat ``j % len(learner_roles)`` against a pool snapshot (``opponents.pool_prob``) or the
    scripted opponent (``opponents.scripted_prob``); ``opponents.seats`` are held by fixed agents in every game. With
    ``opening`` its first 0..opening turns (drawn per game) are random moves. ``arms[j]`` is the curriculum's
    (option, value) for game j: a game option, or with option ``opponent`` the opponent itself (``mirror``, ``pool``
    or a scripted agent spec).
    """
    seats = {r: seat_name(r) for r in opponents.seats}
    learning = [r for r in (learner_roles or roles) if r not in seats]
    matches = []
    for j in games:
        rng = seeds.rng(seed, step, "game", j)
        game_seed = rng.randrange(2**31)
        kind, scripted = _opponent_kind(rng.random(), opponents, pool_ready, arms[j] if arms else None)
        seat = learning[j % len(learning)]
        agents = {
            r: agent_name(LEARNER if kind == LEARNER or r == seat else kind, group_of(r))
            for r in roles
            if r not in seats
        }
        if kind == SCRIPTED:
            agents = {r: a if r == seat else scripted for r, a in agents.items()}
        agents = {r: seats.get(r) or agents[r] for r in roles}
        # meta step counts from 1: the training step this rollout feeds (as checkpoints count steps done)
        meta = {
            "step": step + 1,
            "index": j,
            "opponent": kind,
            "learners": [r for r in learning if kind == LEARNER or r == seat],
        }
        if arms:  # the curriculum's category for game j: (option, value)
            option, value = arms[j]
            meta.update(
                arm=arm_name(value), **({"game_options": arm_options(option, value)} if option != OPPONENT else {})
            )
        matches.append(Match(game_seed, agents, meta, rng.randint(0, opening) if opening else 0))
    return matches


def _opponent_kind(u: float, opponents: Opponents, pool_ready: bool, arm: tuple[str, Any] | None) -> tuple[str, str]:
    """Whom game j's learner plays, from its uniform draw ``u`` (or its curriculum arm, when the arms are opponents),
    and the scripted agent's name. Until the first snapshot, pool games are mirror games."""
    if u < opponents.pool_prob:
        kind = POOL if pool_ready else LEARNER
    else:
        kind = SCRIPTED if u < opponents.pool_prob + opponents.scripted_prob else LEARNER
    if arm is None or arm[0] != OPPONENT:
        return kind, SCRIPTED
    value = str(arm[1])
    kind = LEARNER if value == MIRROR else (POOL if pool_ready else LEARNER) if value == POOL else SCRIPTED
    return kind, scripted_name(value)


@dataclass
class Sample:
    """One learner completion with what training needs."""

    weight_group: str  # the weights it trains (Policy.group: the shared model, its role's adapter or clone)
    game_role: tuple[str, str]  # (game, role): the baseline it is measured against
    turn: tuple[str, int]  # (episode id, turn index): GRPO normalises within the K answers of one turn
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    reward: float
    allowed: list[list[int] | None] | None = None
    arm: str | None = None  # the curriculum category of its episode
    advantage: float = 0.0
    attempt_index: int = -1  # its position among the episode's attempts (where its advantage is written back)
    temperature: float | None = None  # the sampling temperature its logprobs were taken at


def collect_samples(episodes: Sequence[Episode], group_of) -> list[Sample]:
    """Every learner attempt that produced tokens, with its reward (invalid ones carry the game's penalty)."""
    samples = []
    for ep in episodes:
        if ep.status == "error":
            continue
        learners = ep.learner_roles()
        for index, s in enumerate(ep.steps):
            if s.role in learners and s.agent == ep.agents[s.role] and s.completion_ids and s.reward is not None:
                samples.append(
                    Sample(
                        group_of(s.role),
                        (ep.game, s.role),
                        (ep.id, s.turn),
                        s.prompt_ids,
                        s.completion_ids,
                        s.logprobs,
                        s.reward,
                        s.allowed,
                        ep.meta.get("arm"),
                        attempt_index=index,
                        temperature=s.temperature,
                    )
                )
    return samples


def filter_groups(samples: list[Sample], low: float, high: float) -> list[Sample]:
    """Online difficulty filtering (Bae et al. 2025): drop the samples=K groups whose accuracy (share of samples
    with a positive reward) lies outside [low, high]; samples outside such groups are kept."""
    groups: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.turn, []).append(s)
    drop = set()
    for key, members in groups.items():
        if len(members) > 1:
            accuracy = sum(m.reward > 0 for m in members) / len(members)
            if not difficulty_filter([accuracy], low, high)[0]:
                drop.add(key)
    return [s for s in samples if s.turn not in drop]


def credit_progress(samples: Sequence[Sample], infos: Mapping[Any, dict], gains: Mapping[str, float], key) -> None:
    """Learning-progress credit: each sample's reward becomes the measured gain of its episode's key
    (``key(info)``); a sample whose key is None or unmeasured keeps its recorded reward (e.g. a malformed task)."""
    for s in samples:
        k = key(infos[s.turn[0]])
        if k in gains:
            s.reward = gains[k]


@dataclass
class Batch:
    """One step's rollouts on this rank: the episodes, the learner's samples, the pool snapshot played (its step)."""

    episodes: list[Episode]
    samples: list[Sample]
    pool_step: int | None
    seconds: float


@dataclass
class Rollouts:
    """Plays each step's games on this rank and turns them into samples (see the module docstring)."""

    cfg: TrainConfig
    learner: Learner
    game_cls: type[Game]
    store: RecordStore
    run_dir: Path
    average: Callable[[], dict] | None = None  # the learner's exact average policy (small games), for "average"
    context: dict[str, Any] = field(default_factory=dict)  # options the game derived from the last step's episodes
    curriculum_history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cur, opp = self.cfg.curriculum, self.cfg.opponents
        self.arm_values = {arm_name(v): v for v in cur.arms}
        self.curriculum = (
            make_curriculum(cur.policy, list(self.arm_values), **cur.params) if cur.policy != "none" else None
        )
        self.pool = OpponentPool(rundir.pool_dir(self.run_dir), opp.pool_size, opp.pool_sampling)
        pool_arm = cur.option == OPPONENT and POOL in self.arm_values
        self.opponent = frozen_copy(self.learner.policy) if opp.pool_prob or pool_arm else None
        self.filtering = (cur.filter_low, cur.filter_high) != (0.0, 1.0)

    def options(self) -> dict[str, Any]:
        """The options games are made with now: the run's and the current context's (recorded with each episode)."""
        return {**self.cfg.game_options, **self.context}

    def make_game(self, **extra: Any) -> Game:
        """A game with the run's options, the current context and ``extra`` (a curriculum arm's option)."""
        return self.game_cls(**{**self.options(), **extra})

    # -- one step ----------------------------------------------------------------------------------------------
    def collect(self, step: int) -> Batch:
        """Play this rank's slice of step ``step``'s games, plus refill rounds while filtering left it short."""
        start = time.perf_counter()
        acc, cur = self.learner.accelerator, self.cfg.curriculum
        agents, snapshot = self._agents(step)
        episodes, samples, kept, rounds = [], [], set(), 0
        self.learner.model.eval()
        while True:
            new = self._play_round(step, rounds, agents, snapshot is not None)
            fresh = collect_samples(new, self.learner.policy.group)
            episodes, samples, rounds = episodes + new, samples + fresh, rounds + 1
            if not self.filtering:
                break
            kept |= {s.turn for s in filter_groups(fresh, cur.filter_low, cur.filter_high)}
            if (
                sum_scalar(acc, len(kept)) >= self.cfg.rollout.games_per_step * acc.num_processes
                or rounds > cur.filter_refill
            ):
                break
        return Batch(episodes, samples, snapshot.step if snapshot else None, time.perf_counter() - start)

    def keep(self, samples: list[Sample]) -> list[Sample]:
        """The samples that difficulty filtering keeps (all of them without filtering)."""
        cur = self.cfg.curriculum
        return filter_groups(samples, cur.filter_low, cur.filter_high) if self.filtering else samples

    def _agents(self, step: int) -> tuple[dict[str, Any], Any]:
        """This step's agents: the learner (reseeded), the pool snapshot's copy, scripted and opponent-arm agents."""
        cfg, learner, rank = self.cfg, self.learner, self.learner.accelerator.process_index
        agents: dict[str, Any] = dict(learner.agents)
        for i, agent in enumerate(learner.agents.values()):
            agent.sampling.seed, agent.calls = seeds.learner_sampling(cfg.run.seed, step, rank, i), 0
        snapshot = self.pool.choose(seeds.rng(cfg.run.seed, step, "pool")) if self.opponent is not None else None
        if snapshot is not None:
            self.opponent.load_state_dict(
                torch.load(snapshot.path, map_location=learner.accelerator.device), strict=False
            )
            sampling = sampling_config(cfg, seed=seeds.pool_sampling(step))
            agents.update(
                {
                    agent_name(POOL, g): group_agent(self.opponent, g, learner.tokenizer, kind=POOL, sampling=sampling)
                    for g in learner.policy.groups
                }
            )
        if cfg.opponents.scripted_prob:
            spec = cfg.opponents.scripted_opponent
            agents[SCRIPTED] = self._scripted(spec, seeds.opponent(cfg.run.seed, step, rank, spec), SCRIPTED)
        agents.update(
            {
                seat_name(role): build_agent(
                    spec, seed=seeds.opponent(cfg.run.seed, step, rank, role), name=seat_name(role)
                )
                for role, spec in cfg.opponents.seats.items()
            }
        )
        if cfg.curriculum.option == OPPONENT:
            agents.update(
                {
                    scripted_name(v): self._scripted(v, seeds.opponent(cfg.run.seed, step, rank, v), scripted_name(v))
                    for v in self.arm_values
                    if v not in (MIRROR, POOL)
                }
            )
        return agents, snapshot

    def _scripted(self, spec: str, seed: int, name: str) -> Any:
        """A scripted agent by spec, or (``average``) one playing the learner's exact average policy."""
        if spec == AVERAGE:
            from selfplay.training.exploit import TabularAgent

            return TabularAgent(self.average() if self.average else {}, seed=seed, name=name)
        return build_agent(spec, seed=seed, name=name)

    def _play_round(self, step: int, rounds: int, agents: dict[str, Any], pool_ready: bool) -> list[Episode]:
        cfg, acc = self.cfg, self.learner.accelerator
        total = cfg.rollout.games_per_step * acc.num_processes
        first, count = rank_slice(total, acc.num_processes, acc.process_index)
        offset = rounds * total  # refill games continue the step's global list, so their seeds are new
        arms = None
        if self.curriculum is not None:  # the same global list of categories on every rank
            chosen = self.curriculum.choose(seeds.rng(cfg.run.seed, step, "curriculum", rounds), total)
            arms = {offset + i: (cfg.curriculum.option, self.arm_values[a]) for i, a in enumerate(chosen)}
        matches = plan_matches(
            self.game_cls.roles,
            self.learner.policy.group,
            step=step,
            seed=cfg.run.seed,
            games=range(offset + first, offset + first + count),
            opponents=cfg.opponents,
            pool_ready=pool_ready,
            arms=arms,
            opening=cfg.rollout.random_opening,
            learner_roles=cfg.learner_roles,
        )
        with torch.no_grad(), full_parameters(acc, self.learner.model):
            return play(
                self.make_game,
                matches,
                agents,
                store=self.store,
                concurrency=cfg.rollout.concurrency,
                progress="rollout" if cfg.run.progress and acc.is_main_process else False,
                options=self.options(),
            )

    # -- after the update ----------------------------------------------------------------------------------
    def observe(self, done: int, stats: StepStats) -> dict[str, float]:
        """Move on with the step's statistics summed over ranks: the game's context options, the curriculum, the
        pool's record; return the curriculum's metrics."""
        if stats.game:  # e.g. the student's results per skill, which the next step's teachers see
            self.context = self.game_cls.context_options(stats.game)
        for snapshot_step, games in stats.pool_games.items():
            self.pool.record(snapshot_step, int(games), stats.pool_score.get(snapshot_step, 0.0))
        if self.curriculum is None:
            return {}
        signal = "reward" if self.cfg.curriculum.policy in ("adarft", "alp-gmm") else "absadv"
        probabilities = self.curriculum.probabilities()
        self.curriculum.update(stats.arms.mean(signal))
        absadv, reward = stats.arms.mean("absadv"), stats.arms.mean("reward")
        entry = {
            "step": done,
            "p": probabilities,
            "absadv": {a: absadv.get(a) for a in self.arm_values},
            "reward": {a: reward.get(a) for a in self.arm_values},
        }
        self.curriculum_history.append(entry)
        return {
            **{f"curriculum/p/{a}": p for a, p in probabilities.items()},
            **{f"curriculum/{k}/{a}": v for k in ("absadv", "reward") for a, v in entry[k].items() if v is not None},
        }

    def snapshot(self, done: int) -> None:
        """Add the learner's trainable weights to the opponent pool every ``snapshot_every`` steps."""
        opp, acc = self.cfg.opponents, self.learner.accelerator
        if opp.pool_prob and done % opp.snapshot_every == 0:
            self.pool.add(done, self.learner.trainable_state(), write=acc.is_main_process)

    def state_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool.state_dict(),
            "context": dict(self.context),
            "curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
            "curriculum_history": self.curriculum_history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state.get("pool") or [])
        self.context = dict(state.get("context") or {})
        if self.curriculum is not None and state.get("curriculum") is not None:
            self.curriculum.load_state_dict(state["curriculum"])
        self.curriculum_history = list(state.get("curriculum_history") or [])
