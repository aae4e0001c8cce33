"""The game API: what every game implements and what the arena and agents rely on.

A game is one class in one file. One instance plays one episode: ``reset(seed)`` starts it,
``turn()`` says which role acts next (and how many samples it wants), ``observe(role)`` renders what
that role sees as chat messages, ``parse`` turns raw text into an action or raises ``InvalidAction``,
``step`` applies the actions, and ``rewards()`` gives the terminal rewards per role.

Everything here is pure Python: games never import torch, agents, the arena or training.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class Failure(str, Enum):
    """Why an attempt did not yield a usable action."""

    PARSE_ERROR = "PARSE_ERROR"  # the text does not match the action format
    ILLEGAL = "ILLEGAL"  # well-formed, but not allowed in this state
    TIMEOUT = "TIMEOUT"  # the agent or a checker ran out of time
    AGENT_ERROR = "AGENT_ERROR"  # the agent raised instead of answering


class InvalidAction(Exception):
    """Raised by ``Game.parse``/``Game.step`` for text that is not a usable action."""

    def __init__(self, code: Failure | str, message: str):
        super().__init__(message)
        self.code = Failure(code)
        self.message = message


FALLBACKS = ("forfeit", "penalty", "random")


@dataclass(frozen=True)
class InvalidPolicy:
    """What happens after an invalid action: re-prompt ``retries`` times showing the error, then fallback.

    fallback: ``forfeit`` ends the game with ``Game.forfeit_rewards``; ``penalty`` adds ``penalty`` to the
    offender's final reward and plays a random legal move; ``random`` plays a random legal move only.
    In a ``samples=K`` turn each sample is handled alone; a sample that ends invalid reaches ``step`` as None.
    """

    retries: int = 0
    fallback: str = "forfeit"
    penalty: float = -1.0

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"invalid-action fallback {self.fallback!r}: expected one of {', '.join(FALLBACKS)}")
        if self.retries < 0:
            raise ValueError(f"invalid-action retries must be >= 0, got {self.retries}")


OUTCOME_KINDS = ("zero_sum", "constant_sum", "cooperative", "general_sum")


@dataclass(frozen=True)
class Outcome:
    """What a game's results mean, which every report follows (one shared definition: the play table, training
    evaluation, summary.json, tournaments).

    ``kind``: ``zero_sum`` (rewards sum to zero), ``constant_sum`` (rewards sum to ``total`` in every episode, e.g.
    a win paying 1 and a loss 0: strategically zero-sum), ``cooperative`` (every role receives the one team reward)
    or ``general_sum``. ``win_lose``: a result is a win, draw or loss (TicTacToe), so win rates mean something;
    otherwise rewards are amounts (poker chips, scores), reported as means with 95% intervals. ``success``
    (cooperative games): a team reward at or above it is a team success (default: the top of ``reward_range``).
    """

    kind: str = "zero_sum"
    win_lose: bool = True
    success: float | None = None
    total: float = 0.0  # constant_sum: what every episode's rewards sum to

    def __post_init__(self) -> None:
        if self.kind not in OUTCOME_KINDS:
            raise ValueError(f"outcome kind {self.kind!r}: expected one of {', '.join(OUTCOME_KINDS)}")
        if self.total and self.kind != "constant_sum":
            raise ValueError(f"outcome total={self.total:g} applies to kind 'constant_sum', not {self.kind!r}")

    @property
    def competitive(self) -> bool:
        """Zero-sum or constant-sum: one role's gain is the others' loss (two players: strategically zero-sum)."""
        return self.kind in ("zero_sum", "constant_sum")

    @property
    def rates(self) -> str:
        """What the reports count: ``win`` (win/draw/loss), ``success`` (team success) or ``reward`` (means only)."""
        return "success" if self.kind == "cooperative" else "win" if self.win_lose else "reward"

    def result(self, rewards: dict[str, float], role: str, reward_range: tuple[float, float]) -> str:
        """'win', 'draw' or 'loss' for ``role``: in a cooperative game a team success is a win and anything less a
        loss; otherwise a win is the strictly highest reward, a draw a shared top; in a one-role game (a quiz) a
        positive reward is a win."""
        if self.kind == "cooperative":
            success = reward_range[1] if self.success is None else self.success
            return "win" if rewards[role] >= success - 1e-9 else "loss"
        if len(rewards) == 1:
            return "win" if rewards[role] > 0 else "loss"
        top = max(rewards.values())
        if rewards[role] < top:
            return "loss"
        return "draw" if list(rewards.values()).count(top) > 1 else "win"

    def record(self, reward_range: tuple[float, float]) -> dict[str, Any]:
        """The outcome model as stored with each episode, so records read alone still know what results mean."""
        success = reward_range[1] if self.success is None else self.success
        return {
            "kind": self.kind,
            "win_lose": self.win_lose,
            **({"success": success} if self.kind == "cooperative" else {}),
            **({"total": self.total} if self.kind == "constant_sum" else {}),
            "range": [float(reward_range[0]), float(reward_range[1])],
        }


WIN_LOSE_RANGES = ((-1.0, 1.0), (0.0, 1.0))


def outcome_of(cls: type[Game] | Game) -> Outcome:
    """The game's outcome model: its ``outcome`` when it declares one, else derived from ``zero_sum`` (a game that
    sets ``zero_sum = False`` and nothing else is general-sum), ``roles`` and ``reward_range``: results are wins,
    draws and losses only with two or more roles and a range in ``WIN_LOSE_RANGES`` (-1..1 or 0..1); any other range
    holds amounts (chips, scores, tokens), and a one-role game's reward is its score, both reported as mean rewards
    with intervals rather than win rates. A game that leaves ``zero_sum`` at its default while its range holds no
    negative reward cannot be zero-sum: with a 0..1 range and two or more roles it is read as a win paying 1 and a
    loss 0, constant-sum (``total`` 1); with any other such range, general-sum. The conformance checker notes a game
    whose rewards say otherwise."""
    declared = getattr(cls, "outcome", Outcome())
    if declared is not Game.outcome:
        return declared
    low, high = (float(v) for v in cls.reward_range)
    win_lose = len(cls.roles) > 1 and (low, high) in WIN_LOSE_RANGES
    if not cls.zero_sum:
        return Outcome("general_sum", win_lose=win_lose)
    if low >= 0 and high > 0 and not any("zero_sum" in vars(k) for k in type.mro(_class(cls)) if k is not Game):
        if win_lose:
            return Outcome("constant_sum", win_lose=True, total=high + (len(cls.roles) - 1) * low)
        return Outcome("general_sum", win_lose=win_lose)
    return Outcome("zero_sum", win_lose=win_lose)


def _class(game: type[Game] | Game) -> type:
    return game if isinstance(game, type) else type(game)


@dataclass(frozen=True)
class Turn:
    """The next decision: which role acts and how many samples of it the game wants on one observation; or, with
    ``Turn.together(*roles)``, a simultaneous move: every role named acts on an observation taken before any of
    them moved, their model calls are batched together, and ``Game.step_together`` receives all the moves at once."""

    role: str
    samples: int = 1
    others: tuple[str, ...] = ()  # the other roles of a simultaneous turn

    def __post_init__(self) -> None:
        if self.others and self.samples != 1:
            raise ValueError("a simultaneous turn takes one sample per role")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"a simultaneous turn names a role twice: {self.roles}")

    @classmethod
    def together(cls, *roles: str) -> Turn:
        """A simultaneous turn of ``roles``."""
        if not roles:
            raise ValueError("a simultaneous turn needs at least one role")
        return cls(roles[0], 1, tuple(roles[1:]))

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role that acts in this turn."""
        return (self.role, *self.others)

    @property
    def simultaneous(self) -> bool:
        return bool(self.others)


class ExactEvaluation:
    """Optional members for exact evaluation (``games.exact``): the chance of a small game listed, so its tree can be
    enumerated and its exploitability computed exactly, and an expert that states its probabilities."""

    def expert_policy(self, role: str) -> dict[str, float] | None:
        """The expert's action probabilities (legal action text -> probability) where it states them exactly, for
        exact evaluation (``games.exact``); None otherwise."""
        return None

    def deals(self) -> list[tuple[float, Any]] | None:
        """Every chance outcome of an episode decided up front as ``(probability, deal)`` pairs (probabilities
        summing to 1), or None when the game cannot be enumerated. A card revealed later is part of the deal (dealt
        now, shown later)."""
        return None

    def reset_deal(self, deal: Any) -> None:
        """Start an episode from one of ``deals()`` instead of a seed."""
        raise NotImplementedError(f"{type(self).__name__} lists no deals")

    def chance_outcomes(self) -> list[tuple[float, Any]] | None:
        """After ``reset_deal``: the ``(probability, outcome)`` pairs of a chance event the game waits on now (a card
        turned mid-hand), or None when none is pending. Games whose chance is all in the deal leave it None."""
        return None

    def apply_chance(self, outcome: Any) -> None:
        """Resolve the pending chance event with one of ``chance_outcomes()``."""
        raise NotImplementedError(f"{type(self).__name__} has no pending chance events")


class LeakTest:
    """Optional members for the conformance checker's leak test: what only a role may see, and how to redraw
    everything it cannot see. A game where every role sees the whole state declares ``hidden_information = False``."""

    # Whether some role is kept from seeing part of the state (others' cards, pending moves, future chance): None,
    # not declared (check-game asks for ``resample_hidden`` to run its leak test); False, every role sees the whole
    # state, so there is nothing to leak and check-game says so instead of asking; True, there is hidden state.
    hidden_information: ClassVar[bool | None] = None

    def secrets(self, role: str) -> list[str]:
        """Strings that only ``role`` may see; the conformance checker looks for them in other roles' views."""
        return []

    def resample_hidden(self, role: str, rng: random.Random) -> None:
        """Replace, in place, everything ``role`` cannot see (other roles' private cards, pending simultaneous
        moves, future chance outcomes) by a fresh draw consistent with what it can see. The conformance checker
        calls it on a copy of the game and checks that ``role``'s observation is unchanged, which catches leaks
        derived from hidden state, not only literal secrets. Optional, but without it check-game cannot run its leak
        test and says so (a game with nothing hidden declares ``hidden_information = False`` instead)."""
        raise NotImplementedError


class TrainerContext:
    """Optional class-level hooks the trainer calls: a role paid by another's learning progress, the task a role
    wrote (for the proposer-collapse monitor), and statistics one step's games pass to the next step's."""

    @classmethod
    def learning_progress(cls, options: dict[str, Any]) -> LearningProgress | None:
        """A role rewarded by another role's measured learning progress under these options (None: no such role)."""
        return None

    @classmethod
    def written_task(cls, info: dict[str, Any]) -> tuple[str, str | None, float | None] | None:
        """For the proposer-collapse monitor: (the role that wrote this episode's task, the task as text or None when it
        was malformed, the share of the answers that solved it or None), read from the episode's ``info()``; None in
        a game without a task-writing role (the default)."""
        return None

    @classmethod
    def context_stats(cls, infos: list[dict[str, Any]]) -> dict[str, float]:
        """Sums over one training step's episodes, from their ``info()`` dicts, that the next step's games see
        through ``context_options`` (summed over ranks). Default: none."""
        return {}

    @classmethod
    def context_options(cls, totals: dict[str, float]) -> dict[str, Any]:
        """Game options for the next training step from the summed ``context_stats``. Default: none."""
        return {}


class Game(ExactEvaluation, LeakTest, TrainerContext):
    """Base class with the defaults; subclasses set the class attributes and the required methods.

    The members fall into four concerns: the rules, here (required: ``reset``, ``turn``, ``observe``, ``parse``,
    ``step``, ``rewards``; optional: ``legal_actions``, ``random_action``, ``expert_action``, ``forfeit_rewards``,
    ``truncation_rewards``, ``info``, ``answer_slot``, ``compact_observation``, ``step_together``); exact
    evaluation (:class:`ExactEvaluation`); the leak test (:class:`LeakTest`); and the trainer's class-level hooks
    (:class:`TrainerContext`). A game overrides only the members it needs; each default is declared with its
    docstring."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()
    zero_sum: ClassVar[bool] = True
    reward_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    max_turns: ClassVar[int] = 100
    check_seeds: ClassVar[int] = 200  # random playouts the conformance checker runs by default (fewer for slow games)
    action_format: ClassVar[str] = ""  # one line shown to players, e.g. "a cell number in brackets, like [5]"
    invalid_policy: ClassVar[InvalidPolicy] = InvalidPolicy()  # an instance attribute may override it
    outcome: ClassVar[Outcome] = Outcome()  # what results mean: win/lose, or amounts reported as means
    outcome_inferred: ClassVar[bool] = False  # set by adapters that guess ``outcome`` from a library's metadata

    # -- required ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Start a new episode; every chance event afterwards must come from ``self.rng``."""
        raise NotImplementedError

    def turn(self) -> Turn | None:
        """The next decision, or None when the game is over."""
        raise NotImplementedError

    def observe(self, role: str) -> list[Message]:
        """What ``role`` sees now, as chat messages (system + user); never another role's secrets."""
        raise NotImplementedError

    def parse(self, role: str, text: str) -> Any:
        """Turn raw model text into an action, or raise ``InvalidAction``."""
        raise NotImplementedError

    def step(self, role: str, actions: list[Any]) -> list[float] | None:
        """Apply the turn's actions (one per sample; None for a sample that stayed invalid).

        May return one reward per sample (e.g. a solver's correctness); otherwise every sample gets
        the role's terminal reward. A game whose turns are all simultaneous implements ``step_together`` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} returned a one-role Turn({role!r}) but has no step(): "
            f"implement step, or return Turn.together(...) for simultaneous moves"
        )

    def rewards(self) -> dict[str, float]:
        """Terminal rewards per role (called once ``turn()`` is None)."""
        raise NotImplementedError

    def step_together(self, actions: dict[str, Any]) -> None:
        """Apply a simultaneous turn (``Turn.together``): one parsed action per role. Required only of games with
        simultaneous turns."""
        raise NotImplementedError(f"{type(self).__name__} returned a simultaneous Turn but has no step_together()")

    # -- optional ---------------------------------------------------------------------------------
    def legal_actions(self, role: str) -> list[str] | None:
        """Canonical texts of the legal actions, or None when the action space is open text."""
        return None

    def random_action(self, role: str, rng: random.Random) -> str:
        """A uniformly random action text (used by the random agent, the checker and the fallback)."""
        legal = self.legal_actions(role)
        if not legal:
            raise NotImplementedError(f"{type(self).__name__} has no legal_actions(); it must define random_action()")
        return rng.choice(legal)

    def expert_action(self, role: str, rng: random.Random) -> str:
        """A strong scripted move from ``role``'s information only (the game's expert agent)."""
        raise NotImplementedError(f"{type(self).__name__} ships no expert agent")

    def forfeit_rewards(self, offender: str) -> dict[str, float]:
        """Rewards when ``offender`` forfeits, following the outcome model: zero-sum or constant-sum, the lowest
        reward for it that leaves the others' equal shares of the rest within range (two roles -1..1: -1 and +1);
        cooperative, the lowest for the whole team; general-sum, the lowest for it and a neutral 0 (clipped into
        ``reward_range``) for the others."""
        low, high = self.reward_range
        others = [r for r in self.roles if r != offender]
        outcome = outcome_of(self)
        if outcome.kind == "cooperative":
            return {r: low for r in self.roles}
        if outcome.competitive and others:
            worst = max(low, outcome.total - len(others) * high)
            return {offender: worst, **{r: (outcome.total - worst) / len(others) for r in others}}
        return {offender: low, **{r: min(high, max(low, 0.0)) for r in others}}

    def info(self) -> dict[str, Any]:
        """Facts about the finished episode worth recording (e.g. the task, a pseudo-label); JSON values."""
        return {}

    def truncation_rewards(self) -> dict[str, float]:
        """Rewards when the turn limit is hit: a draw by default (constant-sum: equal shares of the total; else 0,
        clipped into ``reward_range``)."""
        outcome = outcome_of(self)
        if outcome.kind == "constant_sum":
            return {r: outcome.total / len(self.roles) for r in self.roles}
        low, high = self.reward_range
        return {r: min(high, max(low, 0.0)) for r in self.roles}

    def answer_slot(self, role: str) -> str | None:
        """Text the role's answer starts with, pre-filled in its assistant turn (an answer slot, so that a small model
        continues "37 + 45 = " instead of explaining): a model agent reads it as the start of its own turn, its prompt
        ends with it, and ``parse`` receives only what the model wrote after it. None: no slot (the default)."""
        return None

    def compact_observation(self, role: str) -> str | None:
        """What ``role`` sees as one short line, for small models (an agent chooses it with ``observer=compact``);
        the same information as ``observe``. None: the game has no compact form."""
        return None

    @property
    def rng(self) -> random.Random:
        """The episode's seeded RNG (created by ``seed_rng`` in ``reset``)."""
        return self._rng

    def seed_rng(self, seed: int) -> None:
        """Create the episode RNG; call first in ``reset``."""
        self._rng = random.Random(seed)


class WriterAnswerer(Game):
    """The two-turn shape of creator/solver and teacher/student: ``roles[0]`` writes a task, which may be malformed
    (``self.malformed`` set: the game ends), then ``roles[1]`` answers it ``self.samples`` times; ``self.outcomes``
    holds the answers' scores. Subclasses set ``task_ready`` and score the rest. Rewards are fractions of the K
    answers (success rates, learnability), so they are amounts, reported as means with intervals."""

    outcome: ClassVar[Outcome] = Outcome("general_sum", win_lose=False)
    malformed_penalty: float = -1.0

    def start_task(self) -> None:
        """Reset the shared state; call from ``reset``."""
        self.malformed: str | None = None
        self.outcomes: list[float] | None = None

    @property
    def task_ready(self) -> bool:
        raise NotImplementedError

    def turn(self) -> Turn | None:
        writer, answerer = self.roles
        if self.malformed is not None:
            return None
        if not self.task_ready:
            return Turn(writer)
        return Turn(answerer, samples=self.samples) if self.outcomes is None else None

    def forfeit_rewards(self, offender: str) -> dict[str, float]:
        """A writer that produces no usable task scores ``malformed_penalty``; the answerer gets nothing either way."""
        writer, answerer = self.roles
        return {writer: self.malformed_penalty if offender == writer else 0.0, answerer: 0.0}

    def success_rate(self) -> float:
        """The answerer's mean score."""
        return sum(self.outcomes) / len(self.outcomes)

    task_fields: ClassVar[tuple[str, ...]] = ()  # the info() fields that make up the written task

    @classmethod
    def written_task(cls, info: dict[str, Any]) -> tuple[str, str | None, float | None] | None:
        """The writer's task from ``info()`` (``task_fields``), None when malformed, with the answers' solve rate
        (``info()['solve_rate']``)."""
        if not cls.task_fields:
            return None
        present = [str(info[f]) for f in cls.task_fields if info.get(f) not in (None, "None")]  # a kind's own fields
        task = None if info.get("malformed") is not None else " | ".join(present)
        return cls.roles[0], task, info.get("solve_rate")


@dataclass(frozen=True)
class LearningProgress:
    """A role rewarded by another role's measured learning progress (a game's ``learning_progress(options)``).

    The trainer updates on every other role's samples first, measures ``probe_role``'s mean reward on the fixed
    ``probes`` before and after that update, and gives each of ``role``'s samples the gain of its episode's key
    (``key(info)``; None keeps the recorded reward, e.g. a malformed task's penalty), then updates ``role``.
    """

    role: str
    probe_role: str
    probe_game: Callable[..., Game]  # factory of the probe game; its one role is played by probe_role's weights
    probes: dict[str, list[tuple[dict[str, Any], int]]]  # key -> [(probe game options, seed)]
    key: Callable[[dict], str | None]


REQUIRED_METHODS = ("reset", "turn", "observe", "parse", "step", "rewards")


def validate_game_class(cls: type) -> None:
    """Raise TypeError naming what a game class lacks (methods, name, roles, a sane reward range)."""
    label = getattr(cls, "__name__", repr(cls))

    def lacks(m: str) -> bool:
        return not callable(getattr(cls, m, None)) or getattr(cls, m) is getattr(Game, m)

    # a game whose every turn is simultaneous needs step_together only
    missing = [m for m in REQUIRED_METHODS if lacks(m) and not (m == "step" and not lacks("step_together"))]
    if missing:
        raise TypeError(f"game class {label} is missing required method(s): {', '.join(missing)}")
    if not getattr(cls, "name", None):
        raise TypeError(f"game class {label} must set the class attribute 'name'")
    roles = cls.roles or _default_roles(cls, label)
    if len(set(roles)) != len(roles):
        raise TypeError(f"game class {label} has duplicate roles: {roles}")
    for role in roles:
        problem = _role_problem(role)
        if problem:
            raise TypeError(f"game class {label} has the role {role!r}: {problem}")
    low, high = cls.reward_range
    if not low <= high:
        raise TypeError(
            f"game class {label} has reward_range {cls.reward_range}: expected (low, high) with low <= high"
        )
    if cls.max_turns < 1:
        raise TypeError(f"game class {label} has max_turns={cls.max_turns}: expected >= 1")


def _role_problem(role: Any) -> str | None:
    """Why ``role`` cannot name a role, or None: a role names a checkpoint folder (one adapter or clone per role),
    a config key and ``ROLE=SPEC`` on the command line."""
    if not isinstance(role, str) or not role.strip():
        return "expected a non-empty string"
    bad = sorted({c for c in role if c in "/\\=" or not c.isprintable()})
    if bad or role in (".", "..") or role != role.strip():
        return (
            f"a role name may not contain {', '.join(map(repr, bad))}"
            if bad
            else "a role name may not be '.' or '..' or start or end with a space"
        ) + " (it names a checkpoint folder and appears as ROLE=SPEC on the command line)"
    return None


def _default_roles(cls: type, label: str) -> tuple[str, ...]:
    """The roles of a game that sets them per instance from its options (``players: int = 3`` and
    ``self.roles = ...`` in ``__post_init__``), read off an instance with the default options."""
    try:
        roles = tuple(cls().roles)
    except Exception as exc:  # noqa: BLE001 - any failure means the roles cannot be known
        raise TypeError(
            f"game class {label} must set the class attribute 'roles', or set self.roles from its "
            f"options in __init__ / __post_init__ ({label}() failed: {type(exc).__name__}: {exc})"
        ) from None
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise TypeError(
            f"game class {label} must set the class attribute 'roles' (a tuple of role names), or set "
            f"self.roles from its options; got {roles!r}"
        )
    return roles


def plays_random(game: Game | type[Game]) -> bool:
    """Whether the random baseline can play ``game`` (a disposable instance, built with the options that will be
    played, or a class, built with its defaults): it defines ``random_action``, or lists legal actions (probed at the
    first turn of seed 0; a free-text game's ``legal_actions`` gives None)."""
    cls = _class(game)
    if cls.random_action is not Game.random_action:
        return True
    if cls.legal_actions is Game.legal_actions:
        return False
    try:
        probe = game() if isinstance(game, type) else game
        probe.reset(0)
        turn = probe.turn()
        return turn is None or probe.legal_actions(turn.role) is not None
    except Exception:  # noqa: BLE001 - a game that cannot be probed is left to fail where it is played
        return True


def with_options(cls: type[Game], options: dict[str, Any] | None) -> type[Game]:
    """``cls`` as played with ``options``: a bad option is a ValueError naming it, and a game whose roles depend on
    its options (a ``players`` option) comes back as a subclass whose class attribute ``roles`` holds that
    instance's roles, so seatings, the trainer and the reports all see the roles that will play."""
    options = {} if options is None else options
    problem = _typed_options(cls, options)  # in place: the games built from ``options`` see alpha=1/3 as a number
    if problem:
        raise ValueError(f"bad options {options} for game {cls.name!r}: {problem}")
    try:
        game = cls(**options)
    except TypeError as exc:
        hint = getattr(cls, "options_hint", "") or _dataclass_hint(cls, options)  # an adapter's own way, or @dataclass
        raise ValueError(
            f"bad options {options} for game {cls.name!r}: {exc}" + (f"; {hint}" if hint else "")
        ) from None
    roles = tuple(game.roles)
    if roles == tuple(cls.roles):
        return cls
    bound = type(cls.__name__, (cls,), {"roles": roles, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    validate_game_class(bound)
    return bound


def _dataclass_hint(cls: type[Game], options: dict[str, Any]) -> str:
    """Where a game declares its options as annotated fields but is no dataclass, what to add."""
    import dataclasses

    annotated = {
        name for k in type.mro(cls) if k is not Game and k is not object for name in vars(k).get("__annotations__", {})
    }
    if dataclasses.is_dataclass(cls) or not set(options) & annotated:
        return ""
    return (
        f"{cls.__name__} declares {', '.join(sorted(set(options) & annotated))} as field(s) but is not a "
        f"dataclass: put @dataclass above 'class {cls.__name__}' (from dataclasses import dataclass) so that its "
        f"options become constructor arguments"
    )


_FITS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _typed_options(cls: type[Game], options: dict[str, Any]) -> str | None:
    """What is wrong with ``options`` for a dataclass game's fields: an unknown name (listing the known ones) or a
    value of the wrong simple type (``cards='x'`` for an ``int``); None if nothing. A fraction given for a float
    (``alpha=1/3``) is replaced in ``options`` by its value. A game that is no dataclass checks its own options."""
    import dataclasses
    import fractions
    import typing

    if not dataclasses.is_dataclass(cls):
        return None
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in options if k not in known]
    if unknown:
        return f"no option {', '.join(map(repr, unknown))}; {cls.name} takes {', '.join(known) or 'none'}"
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: leave the types to the game
        return None
    for key, value in options.items():
        kind = hints.get(key)
        if kind is float and isinstance(value, str):
            try:
                options[key] = value = float(fractions.Fraction(value.strip()))
            except (ValueError, ZeroDivisionError):
                pass
        fits = _FITS.get(kind)
        if fits is not None and not fits(value):
            return f"option {key}={value!r}: expected {'an' if kind is int else 'a'} {kind.__name__}"
    return None


def bracket_word(text: str, words: Sequence[str], legal: Sequence[str], action_format: str) -> str:
    """The one word of ``words`` that ``text`` names as ``[word]`` (or is, alone); InvalidAction when none or
    several are named (PARSE_ERROR) or the word is not in ``legal`` (ILLEGAL)."""
    lowered = text.lower()
    found = [w for w in words if f"[{w}]" in lowered] or [w for w in words if lowered.strip(" .!") == w]
    if len(found) != 1:
        raise InvalidAction(Failure.PARSE_ERROR, f"expected {action_format}, got {text[:60]!r}")
    if found[0] not in legal:
        raise InvalidAction(Failure.ILLEGAL, f"{found[0]!r} is not legal now; legal: {', '.join(legal)}")
    return found[0]


def turn_error(game: Game, turn: Turn) -> str | None:
    """Why ``turn`` breaks the game API (it names a role the game does not have), or None."""
    strangers = [r for r in turn.roles if r not in game.roles]
    return (
        f"{game.name}.turn() named role(s) {strangers}: expected among {', '.join(game.roles)}" if strangers else None
    )


def observation_error(game: Game, role: str, view: Any) -> str | None:
    """Why ``view``, what ``observe(role)`` returned, is not a non-empty list of chat messages
    (``{"role": "system" | "user" | "assistant", "content": str}``), or None."""
    if (
        isinstance(view, list)
        and view
        and all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in view
        )
    ):
        return None
    return (
        f"{game.name}.observe({role!r}) returned {str(view)[:80]!r}: expected a non-empty list of chat messages, "
        f"e.g. [system('rules'), user('state')]"
    )


def system(content: str) -> Message:
    """A system chat message."""
    return {"role": "system", "content": content}


def user(content: str) -> Message:
    """A user chat message."""
    return {"role": "user", "content": content}
