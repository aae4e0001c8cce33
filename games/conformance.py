"""The conformance checker: random playouts that every game must survive.

Run it as ``selfplay check-game GAME`` or call ``check_game``; the test suite runs it over every registered
game. From many seeds it checks that the same seed gives identical prompts, actions and outcome; that the
recorded action log replays to the same outcome; that the game ends within ``max_turns``; that rewards lie
in ``reward_range`` and follow the outcome model (sum to zero when zero-sum, one team reward when cooperative, and
where results are reported as wins, draws and losses, a reward that follows from the result alone);
that ``info()``, ``forfeit_rewards`` and ``truncation_rewards`` are well formed; that no role's observation contains
another role's declared secret, nor changes when what the role cannot see is re-sampled (``resample_hidden``: derived
leaks, and simultaneous movers seeing each other's pending move); and that ``parse`` rejects garbage with
``InvalidAction`` rather than crashing. Each failure names the seed that reproduces it.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from selfplay.games.core import Game, InvalidAction, Turn, observation_error, outcome_of, plays_random, turn_error
from selfplay.games.registry import game_class

GARBAGE = "%%% this is not an action %%%"


@dataclass
class CheckFailure:
    """One failed check, with the seed that reproduces it."""

    check: str
    seed: int | None  # None: a check of the whole game, not of one playout
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {'' if self.seed is None else f'seed={self.seed}: '}{self.message}"


LEAK_TEST_STATES = ("ran", "not needed", "not run", "vacuous")


@dataclass
class Report:
    """The outcome of ``check_game``: playouts run and failures found. ``leak_test`` says whether the perturbation
    leak test ran (``ran``), had nothing to test (``not needed``: the game declares ``hidden_information = False``),
    could not run (``not run``: no ``resample_hidden``) or ran without ever re-drawing anything (``vacuous``)."""

    game: str
    seeds: int
    failures: list[CheckFailure] = field(default_factory=list)
    notes: list[CheckFailure] = field(default_factory=list)  # findings that do not fail the game
    leak_test: str = "ran"

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def unchecked(self) -> str | None:
        """The line that says which check did not run and what to add, or None when every check ran."""
        if self.leak_test == "not run":
            return (
                f"leak test NOT RUN: {self.game} defines no resample_hidden(role, rng), so observations were not "
                f"checked for hidden state they reveal indirectly (only literal secrets() were). Define it to "
                f"re-draw what the role cannot see (others' cards, pending moves, future chance), or declare "
                f"hidden_information = False on the class if every role sees the whole state"
            )
        if self.leak_test == "vacuous":
            return (
                f"leak test VACUOUS: {self.game}.resample_hidden never changed the game's state in {self.seeds} "
                f"playouts, so no leak could show. Make it re-draw what the role cannot see, or declare "
                f"hidden_information = False on the class if every role sees the whole state"
            )
        return None

    def __str__(self) -> str:
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        unchecked = self.unchecked
        missing = f"\n  {unchecked}" if unchecked else ""
        if self.ok:
            verdict = (
                "every check passed"
                if unchecked is None
                else f"every check that ran passed; the leak test did {'not run' if self.leak_test == 'not run' else 'nothing'}"
            )
            return f"{self.game}: OK ({self.seeds} seeds, {verdict}){missing}{notes}"
        by_check: dict[str, list[CheckFailure]] = {}
        for failure in sorted(self.failures, key=lambda f: f.check not in FIRST_CHECKS):  # causes before effects
            by_check.setdefault(failure.check, []).append(failure)
        lines = []  # the first few of each check, so one check failing at every seed hides no other
        for check, found in by_check.items():
            lines += [f"  {f}" for f in found[:3]]
            if len(found) > 3:
                lines.append(f"  ... and {len(found) - 3} more [{check}] failure(s)")
        counts = ", ".join(f"{check} {len(found)}" for check, found in by_check.items())
        return (
            f"{self.game}: FAILED {len(self.failures)} check(s) over {self.seeds} seeds ({counts})\n"
            + "\n".join(lines[:40])
            + (f"\n  ... ({len(lines) - 40} more lines)" if len(lines) > 40 else "")
            + missing
            + notes
        )


FIRST_CHECKS = ("playouts", "determinism")  # a failure of these explains most others: they are listed first


@dataclass
class _Playout:
    transcript: list[tuple[str, list, list[str]]]  # (role, every role's view, action texts) per turn
    rewards: dict[str, float]
    turns: int
    terminated: bool


class Nonconforming(Exception):
    """A playout met something the game API does not allow; ``check`` names the failed check."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


def _observation(game: Game, role: str, turn_index: int, moving: bool = True) -> list:
    """``game.observe(role)``, which must be chat messages (``observation_error``); a role that does not move now
    must be observable too (the leak test compares what every role is shown at every turn)."""
    try:
        view = game.observe(role)
    except Exception as exc:  # noqa: BLE001
        if moving:
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise Nonconforming(
            "observe",
            f"turn {turn_index}: observe({role!r}) raised {type(exc).__name__}: {exc} (at "
            f"{where.filename}:{where.lineno}) while {role} does not move: every role must be "
            f"observable at every turn, as the leak test compares what each role is shown",
        ) from None
    if error := observation_error(game, role, view):
        raise Nonconforming("observe", f"turn {turn_index}: {error}")
    return view


def _playout(game: Game, seed: int, actions: list[list[str]] | None = None, check_legal: bool = False) -> _Playout:
    """Play to the end with random actions (or replay ``actions``), recording every role's view each turn."""
    rng = random.Random(seed + 1)
    game.reset(seed)
    transcript = []
    for turn_index in range(game.max_turns + 1):
        turn = game.turn()
        if turn is None:
            return _Playout(transcript, game.rewards(), turn_index, True)
        if error := turn_error(game, turn):
            raise Nonconforming("turn", f"turn {turn_index}: {error}")
        if turn_index == game.max_turns:
            break
        movers = _movers(turn)
        views = [_observation(game, role, turn_index, role in movers) for role in game.roles]
        if check_legal:
            for role in dict.fromkeys(movers):
                _check_legal(game, role, turn_index)
        texts = actions[turn_index] if actions is not None else [game.random_action(r, rng) for r in movers]
        _apply(game, turn, texts)
        transcript.append((turn.role, views, texts))
    return _Playout(transcript, {}, game.max_turns, False)


LEGAL_PARSED = 3  # legal actions parsed per turn by the conformance checker: the first, the last, one drawn
LEGAL_SEEDS = 20  # ... in the playouts of seeds 0-19 (a list that does not parse is wrong at every seed)


def _check_legal(game: Game, role: str, turn_index: int) -> None:
    """``legal_actions(role)``: None (free text) or distinct strings, each of which ``parse`` accepts (an agent
    given the list, or constrained to it, can only answer from it)."""
    legal = game.legal_actions(role)
    if legal is None:
        return
    if not isinstance(legal, (list, tuple)) or not legal or not all(isinstance(a, str) for a in legal):
        raise Nonconforming(
            "legal",
            f"turn {turn_index}: legal_actions({role!r}) = {legal!r}: expected a non-empty "
            f"list of strings, or None for free text",
        )
    twice = sorted({a for a in legal if legal.count(a) > 1})
    if twice:
        raise Nonconforming("legal", f"turn {turn_index}: legal_actions({role!r}) lists {twice} more than once")
    # parse only reads the game (the API's contract; a deep copy of an adapter's env can break). A few per turn,
    # first and last included: parsing all of Go's 362 at every turn made check-game six times slower.
    sample = (
        legal
        if len(legal) <= LEGAL_PARSED
        else [legal[0], legal[-1], *random.Random(turn_index).sample(legal[1:-1], LEGAL_PARSED - 2)]
    )
    for action in sample:
        try:
            game.parse(role, action)
        except InvalidAction as exc:
            raise Nonconforming(
                "legal", f"turn {turn_index}: legal_actions({role!r}) lists {action!r}, which parse rejects: {exc}"
            ) from None


def _movers(turn: Turn) -> list[str]:
    """The role of each action text of a turn: one per sample, or one per role of a simultaneous turn."""
    return list(turn.roles) if turn.simultaneous else [turn.role] * turn.samples


def _apply(game: Game, turn: Turn, texts: list[str]) -> None:
    """Parse and apply one turn's action texts."""
    parsed = [game.parse(r, t) for r, t in zip(_movers(turn), texts)]
    if turn.simultaneous:
        game.step_together(dict(zip(turn.roles, parsed)))
        return
    sample_rewards = game.step(turn.role, parsed)
    if sample_rewards is not None and len(sample_rewards) != turn.samples:
        raise AssertionError(f"step returned {len(sample_rewards)} sample rewards for {turn.samples} samples")


def _nondeterministic(seed: int, first: _Playout, other: _Playout) -> CheckFailure:
    """The determinism failure: where two playouts from one seed part (the checks that replay it cannot run)."""
    where = next(
        (i for i, (a, b) in enumerate(zip(first.transcript, other.transcript)) if a != b),
        min(len(first.transcript), len(other.transcript)),
    )
    return CheckFailure(
        "determinism",
        seed,
        f"two playouts from the same seed differ (first at turn {where}): every "
        f"chance event must come from self.rng (self.seed_rng(seed) first in "
        f"reset), not from the random module or the clock",
    )


def _check_one(make: Callable[[], Game], seed: int, payouts: _Payouts, leaks: _LeakTally) -> list[CheckFailure]:
    fail = lambda check, msg: CheckFailure(check, seed, msg)  # noqa: E731
    game = make()
    first = _playout(game, seed, check_legal=seed < LEGAL_SEEDS)
    if not first.terminated:
        return [fail("termination", f"still running after max_turns={game.max_turns} turns")]
    failures = []
    _check_win_lose(game, seed, first.rewards, payouts)
    low, high = game.reward_range
    if set(first.rewards) != set(game.roles):
        failures.append(fail("rewards", f"rewards() has roles {sorted(first.rewards)}, expected {sorted(game.roles)}"))
    elif any(not low - 1e-9 <= v <= high + 1e-9 for v in first.rewards.values()):
        failures.append(fail("reward-range", f"rewards {first.rewards} outside reward_range {game.reward_range}"))
    elif error := _sum_error(game, first.rewards):
        failures.append(fail(outcome_of(game).kind.replace("_", "-"), error))
    elif outcome_of(game).kind == "cooperative" and len(set(first.rewards.values())) > 1:
        failures.append(
            fail(
                "cooperative",
                f"rewards {first.rewards} differ: a cooperative game gives every role the one team reward",
            )
        )
    try:
        second = _playout(make(), seed)
    except Exception as exc:  # noqa: BLE001 - the first playout from this seed ran: the game is not deterministic
        second = _Playout([], {"crash": repr(exc)}, 0, False)
    if (second.transcript, second.rewards) != (first.transcript, first.rewards):
        return [*failures, _nondeterministic(seed, first, second)]
    try:  # a third playout, replaying the first's actions (two unseeded ones can agree by chance on a small deck)
        replay = _playout(make(), seed, [texts for _, _, texts in first.transcript])
    except Exception as exc:  # noqa: BLE001 - two playouts agreed, the third did not: the game does not repeat itself
        return [*failures, _nondeterministic(seed, first, _Playout([], {"crash": repr(exc)}, 0, False))]
    if replay.transcript != first.transcript:  # what the roles were shown changed under the same actions
        return [*failures, _nondeterministic(seed, first, replay)]
    if replay.rewards != first.rewards:
        failures.append(fail("replay", f"replaying the action log gave {replay.rewards}, the original {first.rewards}"))
    try:  # these replay the seed's logged actions: a logged action refused on replay means the game did not repeat
        failures += _check_endings(game, seed)
        failures += _check_secrets(make(), seed, first)
        failures += _check_hidden(make(), seed, first, leaks)
    except (InvalidAction, IndexError) as exc:
        return [*failures, _nondeterministic(seed, first, _Playout([], {"crash": repr(exc)}, 0, False))]
    failures += _check_garbage(make(), seed)
    return failures


@dataclass
class _Payouts:
    """What each (role, result) paid across the playouts of one check, and the first sign that rewards are amounts."""

    seen: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)  # -> first reward and its seed
    amounts: CheckFailure | None = None


def _check_win_lose(game: Game, seed: int, rewards: dict[str, float], payouts: _Payouts) -> None:
    """Where the outcome model reports win rates, a role's reward must follow from its result alone (a win always
    pays the same): otherwise rewards are amounts, and a win rate would hide how much was won or lost."""
    outcome = outcome_of(game)
    if not outcome.win_lose or outcome.kind == "cooperative" or set(rewards) != set(game.roles) or payouts.amounts:
        return
    for role, reward in rewards.items():
        result = outcome.result(rewards, role, game.reward_range)
        before, where = payouts.seen.setdefault((role, result), (reward, seed))
        if abs(before - reward) > 1e-9:
            payouts.amounts = CheckFailure(
                "outcome",
                seed,
                f"results are reported as wins, draws and losses, but a {result} pays {role} "
                f"{reward:g} here and {before:g} at seed {where}: rewards are amounts; declare outcome = "
                f"Outcome({outcome.kind!r}, win_lose=False) so that reports show mean rewards with intervals",
            )
            return


def _check_secrets(game: Game, seed: int, playout: _Playout) -> list[CheckFailure]:
    game.reset(seed)
    for turn_index, (_, views, texts) in enumerate(playout.transcript):
        secrets = {r: game.secrets(r) for r in game.roles}
        for owner in game.roles:
            for secret in secrets[owner]:
                for role, view in zip(game.roles, views):
                    # a phrase the viewer holds as its own secret too (both hold a King) is not a leak
                    if (
                        role != owner
                        and secret
                        and secret not in secrets[role]
                        and any(secret in m["content"] for m in view)
                    ):
                        return [
                            CheckFailure(
                                "secrets",
                                seed,
                                f"turn {turn_index}: {role}'s observation contains {owner}'s secret {secret!r}",
                            )
                        ]
        if turn_index == len(playout.transcript) // 2:  # the turn limit can strike mid-game: end it there too
            failures = _check_endings(game, seed, midgame=True)
            if failures:
                return failures
        _apply(game, game.turn(), texts)
    return []


def _sum_error(game: Game, rewards: dict[str, float]) -> str | None:
    """Why ``rewards`` break a zero-sum or constant-sum outcome model, or None (also for other outcome models)."""
    outcome, total = outcome_of(game), sum(rewards.values())
    if not outcome.competitive or abs(total - outcome.total) <= 1e-6:
        return None
    hint = ""
    if outcome.kind == "zero_sum" and game.reward_range[0] >= 0:
        hint = (
            f" (reward_range {tuple(game.reward_range)} holds no negative reward: a win paying 1 and a loss 0 is "
            f"constant-sum, outcome = Outcome('constant_sum', total={total:g}); scores are zero_sum = False)"
        )
    elif outcome.kind == "constant_sum" and game.outcome is Game.outcome:
        hint = (
            " (constant-sum was inferred from reward_range (0, 1) and the default zero_sum: declare zero_sum = "
            "False for a general-sum game, or outcome = Outcome(...))"
        )
    return f"rewards {rewards} sum to {total:g}, not {outcome.total:g}{hint}"


def _check_endings(game: Game, seed: int, midgame: bool = False) -> list[CheckFailure]:
    """``info()`` of the episode is a JSON dict; ``forfeit_rewards`` (for every offender) and ``truncation_rewards``
    name every role, within ``reward_range``, and follow the outcome model (at the end, or ``midgame``, where a
    forfeit or the turn limit can end a game too)."""
    failures = []
    info = game.info()
    try:
        json.dumps(info)
        if not isinstance(info, dict):
            raise TypeError(f"a {type(info).__name__}, not a dict")
    except (TypeError, ValueError) as exc:
        failures.append(
            CheckFailure(
                "info", seed, f"info(){' mid-game' if midgame else ''} must return a dict of JSON values: {exc}"
            )
        )
    low, high = game.reward_range
    kind = outcome_of(game).kind
    endings = [(f"forfeit_rewards({r!r})", game.forfeit_rewards(r), r) for r in game.roles]
    for label, rewards, offender in [*endings, ("truncation_rewards()", game.truncation_rewards(), None)]:
        if set(rewards) != set(game.roles):
            failures.append(
                CheckFailure("endings", seed, f"{label} has roles {sorted(rewards)}, expected {sorted(game.roles)}")
            )
        elif any(not low - 1e-9 <= v <= high + 1e-9 for v in rewards.values()):
            failures.append(
                CheckFailure("endings", seed, f"{label} = {rewards} outside reward_range {game.reward_range}")
            )
        elif kind == "cooperative" and len(set(rewards.values())) > 1:
            failures.append(
                CheckFailure("endings", seed, f"{label} = {rewards}: a cooperative game must give the team one reward")
            )
        elif error := _sum_error(game, rewards):
            failures.append(CheckFailure("endings", seed, f"{label}: {error}"))
        elif offender is not None and kind == "cooperative" and rewards[offender] >= high and low < high:
            failures.append(CheckFailure("endings", seed, f"{label} = {rewards} rewards the team for a forfeit"))
        elif (
            offender is not None
            and len(game.roles) > 1
            and any(rewards[offender] > v for r, v in rewards.items() if r != offender)
        ):
            failures.append(CheckFailure("endings", seed, f"{label} = {rewards}: the offender gains over another role"))
    return failures


def _shown(game: Game, role: str, moving: bool) -> list[tuple[str, Any]]:
    """Everything ``role`` is shown now: its observation and compact observation and, when it moves, the legal
    actions an agent may be given and the message a re-prompt would show after an unusable answer."""
    shown = [("observation", game.observe(role)), ("compact observation", game.compact_observation(role))]
    if moving:
        shown.append(("legal actions", game.legal_actions(role)))
        try:
            copy.deepcopy(game).parse(role, GARBAGE)
            shown.append(("re-prompt message", None))
        except InvalidAction as exc:
            shown.append(("re-prompt message", str(exc)))
    return shown


@dataclass
class _LeakTally:
    """What the perturbation leak test did over all playouts: whether ``resample_hidden`` exists, and whether any
    call of it changed the game's state (one that never does tests nothing)."""

    implemented: bool = True
    changed: bool = False

    def state(self, game: Game) -> str:
        if game.hidden_information is False:  # the instance's: options may decide it (creator_solver's arithmetic)
            return "not needed"
        return "not run" if not self.implemented else "ran" if self.changed else "vacuous"


def _fingerprint(game: Game) -> bytes | str:
    """The game's state as bytes, to tell whether ``resample_hidden`` changed anything (repr where it won't pickle)."""
    try:
        return pickle.dumps(vars(game))
    except Exception:  # noqa: BLE001 - an adapter's native state: its repr, which differs whenever it is a new object
        return repr(vars(game))


def _difference(what: str, seen: Any, resampled: Any) -> str:
    """Where ``seen`` and ``resampled`` first differ, as a short quote of each (which message, around which text)."""
    if isinstance(seen, list) and isinstance(resampled, list) and len(seen) == len(resampled):
        for index, (a, b) in enumerate(zip(seen, resampled)):
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):
                    label = f"message {index} ({a.get('role', '?')})"
                    a, b = a.get("content", a), b.get("content", b)
                else:
                    label = f"item {index}"
                return f"{what}, {label}: {_quote(a, b)}"
    return f"{what}: {_quote(seen, resampled)}"


def _quote(a: Any, b: Any, width: int = 40) -> str:
    a, b = (x if isinstance(x, str) else repr(x) for x in (a, b))
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - width // 2)
    cut = lambda t: ("..." if start else "") + t[start : start + width] + ("..." if len(t) > start + width else "")  # noqa: E731
    return f"{cut(a)!r} became {cut(b)!r}"


def _check_hidden(game: Game, seed: int, playout: _Playout, leaks: _LeakTally) -> list[CheckFailure]:
    """Leak test by perturbation: at every turn, for every role, re-sample on a copy what the role cannot see
    (``resample_hidden``) and check that nothing it is shown changes (observation, compact observation and, when it
    moves, its legal actions and the re-prompt message); a simultaneous turn's observations must also not change once
    every mover's answer is parsed. Without ``resample_hidden`` the perturbation cannot run, which ``leaks`` records
    (the report says so)."""
    rng = random.Random(seed ^ 0xC0FFEE)
    game.reset(seed)
    perturb = leaks.implemented and game.hidden_information is not False
    for turn_index, (_, _, texts) in enumerate(playout.transcript):
        turn = game.turn()
        for role in game.roles if perturb else ():
            probe = copy.deepcopy(game)
            before = None if leaks.changed else _fingerprint(probe)
            try:
                probe.resample_hidden(role, rng)
            except NotImplementedError:
                perturb = leaks.implemented = False
                break
            if before is not None and _fingerprint(probe) != before:
                leaks.changed = True
            moving = role in turn.roles
            for (what, seen), (_, resampled) in zip(_shown(game, role, moving), _shown(probe, role, moving)):
                if seen != resampled:
                    return [
                        CheckFailure(
                            "hidden",
                            seed,
                            f"turn {turn_index}: what {role} is shown changes when "
                            f"what it cannot see is re-sampled, so it leaks hidden state "
                            f"(its {_difference(what, seen, resampled)})",
                        )
                    ]
        if turn.simultaneous:
            before = {r: game.observe(r) for r in turn.roles}
            for r, t in zip(turn.roles, texts):
                game.parse(r, t)
            changed = [r for r in turn.roles if game.observe(r) != before[r]]
            if changed:
                return [
                    CheckFailure(
                        "simultaneous",
                        seed,
                        f"turn {turn_index}: {changed[0]}'s observation changes "
                        f"once the other movers' answers are parsed",
                    )
                ]
        _apply(game, turn, texts)
    return []


def _check_deals(cls: type[Game], make: Callable[[], Game]) -> list[CheckFailure]:
    """A game that lists its chance (``deals()``, ``chance_outcomes()``) is enumerated as exact evaluation will:
    probabilities that do not sum to 1, a deal that cannot be played, or a legal action that does not parse fail
    here instead of silently turning the exact figures off in training. A tree too large to enumerate (or with several
    samples at one decision) is no failure."""
    from selfplay.games import exact

    if not exact.is_enumerable(cls):
        return []
    try:
        if make().deals() is None:  # the game declines with these options (too large)
            return []
        exact.build_tree(make, max_nodes=EXACT_CHECK_NODES)
    except exact.TooLarge:
        return []
    except ValueError as exc:
        return [CheckFailure("deals", None, str(exc))]
    except Exception as exc:  # noqa: BLE001 - the game's own code failed while a deal was played out
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [
            CheckFailure(
                "deals",
                None,
                f"enumerating the deals: {type(exc).__name__}: {exc} "
                f"(at {where.filename}:{where.lineno} in {where.name})",
            )
        ]
    return []


EXACT_CHECK_NODES = 200_000  # check-game enumerates trees up to this size


def _check_garbage(game: Game, seed: int) -> list[CheckFailure]:
    game.reset(seed)
    turn = game.turn()
    if turn is None:
        return []
    try:
        action = game.parse(turn.role, GARBAGE)
    except InvalidAction:
        return []
    except Exception as exc:  # noqa: BLE001
        return [
            CheckFailure("parse", seed, f"parse raised {type(exc).__name__} on garbage text instead of InvalidAction")
        ]
    return [CheckFailure("parse", seed, f"parse accepted garbage text {GARBAGE!r} as {action!r}")]


def check_game(
    game: str | type[Game],
    seeds: Iterable[int] | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> Report:
    """Run every conformance check from each seed (default: the game's ``check_seeds``); a crash in the game is
    reported as a failure too. ``progress``: a bar over the seeds (on a terminal)."""
    cls = game_class(game) if isinstance(game, str) else game
    make = lambda: cls(**(options or {}))  # noqa: E731
    seeds = list(range(cls.check_seeds) if seeds is None else seeds)
    report = Report(cls.name, len(seeds))
    payouts, leaks = _Payouts(), _LeakTally()
    if not plays_random(cls):  # every playout would crash at its first move: say so once
        report.failures.append(
            CheckFailure(
                "playouts",
                None,
                "the checks play random playouts, but the game lists no "
                "legal actions (legal_actions() gives None) and defines no random_action: "
                "define random_action(role, rng) to draw a valid free-text answer",
            )
        )
        return report
    for seed in tqdm(seeds, desc="check-game", unit="seed", disable=None if progress else True, leave=False):
        try:
            report.failures += _check_one(make, seed, payouts, leaks)
        except Nonconforming as exc:
            report.failures.append(CheckFailure(exc.check, seed, str(exc)))
        except Exception as exc:  # noqa: BLE001
            where = traceback.extract_tb(exc.__traceback__)[-1]
            report.failures.append(
                CheckFailure(
                    "crash", seed, f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno} in {where.name})"
                )
            )
    report.failures += _check_deals(cls, make)
    report.leak_test = leaks.state(make())
    if payouts.amounts is not None:  # a declared outcome model that is wrong fails; an inferred one is a note
        inferred = cls.outcome is Game.outcome or getattr(cls, "outcome_inferred", False)
        (report.notes if inferred else report.failures).append(payouts.amounts)
    outcome = outcome_of(cls)
    if outcome.kind == "constant_sum" and cls.outcome is Game.outcome:
        report.notes.append(
            CheckFailure(
                "outcome",
                None,
                f"read as constant-sum (rewards sum to {outcome.total:g}: a "
                f"win pays {cls.reward_range[1]:g}, a loss {cls.reward_range[0]:g}) from "
                "reward_range (0, 1); declare outcome = Outcome(...) to say otherwise",
            )
        )
    return report
