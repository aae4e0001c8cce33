"""Evaluation during training: the learner against each scripted baseline in every seat on a fixed set of games,
held-out accuracy per curriculum arm, and the learning-progress probes. Seeds come from ``training.seeds``, so the
games are the same at every evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from selfplay.agents.specs import build_agent
from selfplay.arena.matches import Match, paired_matches
from selfplay.arena.play import play
from selfplay.arena.ratings import Result, bootstrap, bradley_terry
from selfplay.arena.records import Episode, RecordStore
from selfplay.arena.stats import Tally
from selfplay.games.core import Game, LearningProgress, outcome_of
from selfplay.training import seeds
from selfplay.training.binding import quiz_options
from selfplay.training.config import TrainConfig
from selfplay.training.distributed import full_parameters, gather, rank_slice, reduce_sum
from selfplay.training.learner import Learner
from selfplay.training.names import LEARNER, OPPONENT, arm_name, arm_options, seat_name

BASELINE = "baseline"
MIRROR = "mirror"  # the evaluation opponent that is the learner itself: every free seat plays the current weights
ALONE = "none"  # the evaluation's name where the learner has no opponent seat (a one-role game, every other seat fixed)


@dataclass
class SeatTallies:
    """The learner's tally over all its evaluation games and per seat."""

    overall: Tally = field(default_factory=Tally)
    seats: dict[str, Tally] = field(default_factory=dict, metadata={"of": Tally})


@dataclass
class Means:
    """Sums and counts per key, for means over every rank."""

    sum: dict[str, float] = field(default_factory=dict)
    n: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.sum[key] = self.sum.get(key, 0.0) + value
        self.n[key] = self.n.get(key, 0.0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sum[k] / n for k, n in self.n.items() if n}


@dataclass
class Evaluator:
    """Plays the fixed evaluation games of a run with the learner's current weights."""

    cfg: TrainConfig
    learner: Learner
    make_game: Callable[..., Game]
    roles: tuple[str, ...]
    store: RecordStore
    options: Callable[[], dict[str, Any]] = dict  # the options ``make_game`` uses now, recorded with each episode

    def _play(
        self,
        matches: list[Match],
        agents: dict[str, Any],
        store: RecordStore | None,
        make_game: Callable[..., Game] | None = None,
    ) -> list[Episode]:
        self.learner.model.eval()
        with torch.no_grad(), full_parameters(self.learner.accelerator, self.learner.model):
            return play(
                make_game or self.make_game,
                matches,
                agents,
                store=store,
                concurrency=self.cfg.rollout.concurrency,
                progress=False,
                options=None if make_game else self.options(),
            )

    def _slice(self, items: list) -> list:
        acc = self.learner.accelerator
        first, count = rank_slice(len(items), acc.num_processes, acc.process_index)
        return items[first : first + count]

    @property
    def outcome(self):
        return outcome_of(type(self.make_game()))

    @property
    def temperature(self) -> float:
        t = self.cfg.evaluation.temperature
        return self.cfg.sampling.temperature if t is None else t

    def entry(
        self, step: int, seconds: float, exact: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """One history entry (the evaluation against every baseline, the held-out one, the exact exploitability
        when the game is small enough) and its metrics. Win rates only for win/lose games; otherwise the mean
        reward over the seats."""
        opponents = self.cfg.evaluation.opponents
        if opponents and not self.free_seats:  # the learner plays alone: one evaluation, not one per named baseline
            opponents = [ALONE]
        evaluation = {opponent: self.against(opponent, step) for opponent in opponents}
        rates = self.outcome.rates  # win (win/lose games), success (cooperative) or reward (amounts)
        win_lose = rates == "win"
        elo = gauntlet_elo(evaluation) if evaluation and win_lose else None
        for result in evaluation.values():
            result["learner_elo"] = elo
            if rates == "success":
                result["success"] = result["win"]
                for seat in result["seats"].values():
                    seat["success"] = seat["win"]
            if not win_lose:  # no win rates where results are not wins and losses (summary.json, report, metrics)
                for counts in (result, *result["seats"].values()):
                    for key in ("win", "draw", "loss", "win_or_draw"):
                        counts.pop(key, None)
        metrics = (
            {f"winrate/vs_{k}": v["win_or_draw"] for k, v in evaluation.items()}
            if win_lose
            else {f"success/vs_{k}": v["success"] for k, v in evaluation.items()}
            if rates == "success"
            else {}
        )
        if not win_lose:
            metrics.update({f"reward/vs_{k}": v["mean_reward"] for k, v in evaluation.items()})
        entry = {
            "step": step,
            "seconds": seconds,
            "outcome": self.outcome.kind,
            "win_lose": win_lose,
            "rates": rates,
            "evaluation": evaluation,
        }
        if exact is not None:
            entry["exact"] = exact
            metrics["exploitability"] = exact["exploitability"]
            if "average" in exact:
                metrics["exploitability/average"] = exact["average"]
            if "team_value" in exact:
                metrics["team_value"] = exact["team_value"]
        if self.cfg.evaluation.quiz_game:
            entry["quiz"] = self.quiz(step)
            metrics.update({f"quiz/{k}": v["accuracy"] for k, v in entry["quiz"].items()})
        if self.cfg.evaluation.heldout:
            entry["heldout"] = self.heldout(step)
            metrics.update(
                {f"heldout/{role}/{arm}": v for role, arms in entry["heldout"].items() for arm, v in arms.items()}
            )
        return entry, metrics

    @property
    def free_seats(self) -> int:
        """Seats a baseline takes beside the learner's (0 in a one-role game, or when ``opponents.seats`` fixes
        every other role)."""
        return len(self.roles) - len(self.cfg.opponents.seats) - 1

    def against(self, opponent: str, step: int) -> dict[str, Any]:
        """The learner against ``opponent`` in every seat (``evaluation.games`` games, paired seeds): win / draw /
        loss and invalid rates, and its mean reward per seat."""
        matches = self._mirror_matches(step) if opponent == MIRROR else self._baseline_matches(opponent, step)
        agents = {**self.learner.agents_at(self.temperature), **self._seat_agents()}
        if self.free_seats and opponent != MIRROR:
            agents[BASELINE] = build_agent(opponent, seed=seeds.EVAL_BASELINE, name=BASELINE)  # per-game draws
        tallies = SeatTallies()
        for ep in self._play(self._slice(matches), agents, self.store):
            seats = ep.learner_roles()  # one seat against a baseline; every learned seat in self-play
            tallies.overall.add(ep, seats[0])
            for other in seats[1:]:  # the game counts once, but every seat's answers count towards the invalid rate
                mine = [s for s in ep.steps if s.role == other]
                tallies.overall.attempts += len(mine)
                tallies.overall.invalid += sum(s.failure is not None for s in mine)
            for seat in seats:
                tallies.seats.setdefault(seat, Tally()).add(ep, seat)
        tallies = reduce_sum(self.learner.accelerator, tallies)
        t = tallies.overall
        seats = {r: s for r, s in tallies.seats.items() if s.decided}
        # the mean over seats weighs each seat equally; its interval adds the seats' variances of the mean
        mean = sum(s.mean_reward for s in seats.values()) / max(1, len(seats))
        half = 1.96 * math.sqrt(sum(s.reward_variance / s.decided for s in seats.values())) / max(1, len(seats))
        # no spread within any seat: the pooled games' interval (Wilson's where every game paid the same)
        low, high = t.clip(mean - half, mean + half) if half > 0 or not t.decided else t.reward_interval()
        return {
            "games": max(1.0, t.decided),
            "win": t.rate(t.wins),
            "draw": t.rate(t.draws),
            "loss": t.rate(t.losses),
            "win_or_draw": t.rate(t.wins + t.draws),
            "invalid_rate": t.invalid_rate,
            # the learner's mean reward per seat (the same seeds and baseline tasks at every evaluation)
            "seats": {
                r: {"win": s.rate(s.wins), "draw": s.rate(s.draws), "loss": s.rate(s.losses), "games": s.decided}
                for r, s in seats.items()
            },
            "reward": {r: s.mean_reward for r, s in seats.items()},
            "reward_ci": {r: list(s.reward_interval()) for r, s in seats.items()},
            "mean_reward": mean,
            "mean_reward_ci": [low, high],
            "mean_reward_se": half / 1.96 if half > 0 else (high - low) / (2 * 1.96),
        }

    def _baseline_matches(self, opponent: str, step: int) -> list[Match]:
        """The learner in each seat it learns, the baseline in the other free seats; each seed in every seating."""
        fixed = {r: seat_name(r) for r in self.cfg.opponents.seats}
        lineup = [LEARNER] + [BASELINE] * self.free_seats
        matches = paired_matches(
            self.roles,
            lineup,
            self.cfg.evaluation.games,
            seed=seeds.EVAL_GAMES,
            meta={"step": step, "eval": opponent},
            fixed=fixed,
        )
        for m in matches:
            seat = next(r for r, a in m.agents.items() if a == LEARNER)
            m.agents[seat] = self.learner.name(seat)
            m.meta["learners"] = [seat]
        # the learner is evaluated in the seats it learns (every seat unless learner_roles narrows them)
        return [m for m in matches if m.meta["learners"][0] in self.cfg.learner_roles]

    def _mirror_matches(self, step: int) -> list[Match]:
        """Self-play: the learner's current weights in every free seat (each role through its own weights), one game
        per evaluation seed; the measure of a cooperative game, where the team is the learner with itself."""
        seats = self.cfg.opponents.seats
        lineup = {r: seat_name(r) if r in seats else self.learner.name(r) for r in self.roles}
        learned = [r for r in self.roles if r not in seats and r in self.cfg.learner_roles]
        return [
            Match(seeds.EVAL_GAMES + i, dict(lineup), {"step": step, "eval": MIRROR, "learners": learned})
            for i in range(self.cfg.evaluation.games)
        ]

    def _seat_agents(self) -> dict[str, Any]:
        """The fixed agents of ``opponents.seats``, seeded for evaluation."""
        # scripted agents draw per game from the match seed: the same moves on any number of ranks
        return {
            seat_name(r): build_agent(spec, seed=seeds.EVAL_BASELINE + 7, name=seat_name(r))
            for r, spec in self.cfg.opponents.seats.items()
        }

    def heldout(self, step: int) -> dict[str, dict[str, float]]:
        """Mean reward of the learner in each role on ``evaluation.games`` fixed seeds (never drawn in training) per
        curriculum arm (opponent arms aside), every role played by the learner: held-out accuracy for task games.
        {role: {arm: mean, "all": mean}}."""
        cur = self.cfg.curriculum
        arms = [(cur.option, v) for v in cur.arms if cur.option != OPPONENT] or [(None, None)]
        seats = self.cfg.opponents.seats
        everyone = {r: seat_name(r) if r in seats else self.learner.name(r) for r in self.roles}
        matches = [
            Match(
                seeds.HELDOUT_GAMES + j,
                everyone,
                {
                    "step": step,
                    "eval": "heldout",
                    "learners": list(self.cfg.learner_roles),
                    **({"arm": arm_name(v), "game_options": arm_options(o, v)} if o else {}),
                },
            )
            for o, v in arms
            for j in range(self.cfg.evaluation.games)
        ]
        sums = Means()
        for ep in self._play(
            self._slice(matches), {**self.learner.agents_at(self.temperature), **self._seat_agents()}, self.store
        ):
            if ep.status != "error":
                for role, reward in ep.rewards.items():
                    for arm in {ep.meta.get("arm", "all"), "all"}:
                        sums.add(f"{role}|{arm}", reward)
        out: dict[str, dict[str, float]] = {}
        for key, mean in reduce_sum(self.learner.accelerator, sums).means().items():
            role, arm = key.split("|")
            out.setdefault(role, {})[arm] = mean
        return out

    def quiz(self, step: int) -> dict[str, dict[str, Any]]:
        """The held-out quiz (``evaluation.quiz_*``): ``evaluation.quiz_role``'s weights answer ``quiz_games``
        problems per set, greedy, once each, on seeds of the quiz's own range (the same at every evaluation, never a
        training game's). {set: {"accuracy", "n", "outcomes": each problem's reward in seed order}}."""
        from selfplay.games.registry import game_class

        ev = self.cfg.evaluation
        cls = game_class(ev.quiz_game)
        name = self.learner.name(ev.quiz_role)
        matches = [
            Match(
                seeds.QUIZ_GAMES + j,
                {cls.roles[0]: name},
                {"step": step, "quiz": key, "index": j, "game_options": quiz_options(cls, options)},
            )
            for key, options in ev.quiz_sets.items()
            for j in range(ev.quiz_games)
        ]
        mine = [
            (ep.meta["quiz"], ep.meta["index"], next(iter(ep.rewards.values()), 0.0) if ep.status != "error" else 0.0)
            for ep in self._play(self._slice(matches), {name: self.learner.agents_at(0.0)[name]}, None, cls)
        ]
        results = sorted(gather(self.learner.accelerator, mine))
        out = {}
        for key in ev.quiz_sets:
            outcomes = [r for k, _, r in results if k == key]
            out[key] = {
                "accuracy": sum(outcomes) / len(outcomes) if outcomes else float("nan"),
                "n": len(outcomes),
                "outcomes": outcomes,
            }
        return out

    def probe(self, progress: LearningProgress, step: int) -> dict[str, float]:
        """``progress.probe_role``'s mean reward per key on the fixed probes, greedy, split over ranks (not recorded)."""
        name = self.learner.name(progress.probe_role)
        agents = {name: self.learner.agents_at(0.0)[name]}
        matches = []
        for key, probes in progress.probes.items():
            for options, seed in self._slice(probes):
                game_role = progress.probe_game(**options).roles[0]
                matches.append(Match(seed, {game_role: name}, {"step": step, "probe": key, "game_options": options}))
        sums = Means()
        for ep in self._play(matches, agents, None, progress.probe_game):
            sums.add(ep.meta["probe"], next(iter(ep.rewards.values()), 0.0))
        means = reduce_sum(self.learner.accelerator, sums).means()
        return {k: means.get(k, 0.0) for k in progress.probes}


def gauntlet_elo(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The learner's Bradley-Terry Elo from its evaluation games (random = 0 when it is an opponent), with a
    95% interval from a bootstrap over games: the rating history a run accumulates."""
    games = []
    for opponent, r in results.items():
        n = int(round(r["games"]))
        wins, draws = int(round(r["win"] * n)), int(round(r["draw"] * n))
        games += [
            Result("learner", opponent, score, (opponent, i))
            for i, score in enumerate([1.0] * wins + [0.5] * draws + [0.0] * (n - wins - draws))
        ]
    anchor = "random" if "random" in results else None
    fit = bradley_terry(games, anchor)
    low, high = bootstrap(games, anchor, rounds=100)["learner"]
    return {"elo": fit["learner"], "low": low, "high": high, "anchor": anchor or "mean of the opponents"}


def infos(episodes: Iterable[Episode]) -> dict[str, dict]:
    """Each episode's ``info()`` by episode id."""
    return {ep.id: ep.meta.get("info") or {} for ep in episodes}
