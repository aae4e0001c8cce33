"""Tournaments: rate any set of agents on a game and write a report.

    selfplay tournament tictactoe --agents random expert --run runs/tictactoe --games 40 --out runs/tournament

Participants are agent specs (``random``, ``expert``, ``smollm2``, ``hf:PATH``, ...) and, with ``--run``, the
checkpoints of a training run (``step_000010`` ... as ``hf:`` agents). Schedules: ``round-robin`` (every pair) or
``gauntlet`` (each ``--candidates`` agent against every other participant). Each pairing plays ``--games`` games,
every seed twice with the seats swapped; a game of N players seats N participants per table (every combination),
each seed played once per cyclic rotation, and rates them by Bradley-Terry on the pairwise comparisons of each game
(higher reward wins); ``--seats judge=expert`` holds a role by a fixed, unrated agent. For cooperative and
general-sum games each participant also plays a table with itself in every seat (``--self-play``, the score matrix's
diagonal); cooperative games rank by that self-play team reward, cross-play shown beside. All tables are played at
once through the arena, so each model answers every pending turn of every table in one batched call. Re-running with
the same ``--out`` reuses recorded games whose record key matches (game, options, seed, every participant's spec and
model content hash) and plays only the missing ones; a folder that holds another game's records is refused. A
participant that crashes forfeits its games (recorded as AGENT_ERROR); the tournament goes on."""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

from selfplay.agents.heap import settled_heap
from selfplay.agents.spec_syntax import MODEL_KINDS, parse_key_values, parse_seats, parse_spec
from selfplay.agents.specs import build_agent, check_spec
from selfplay.arena.matches import Match, paired_matches, seatings
from selfplay.arena.participants import (
    Participant,
    checkpoint_participants,
    distinct_names,
    record_key,
    trained_elsewhere,
)
from selfplay.arena.play import play
from selfplay.arena.records import open_store
from selfplay.arena.rundir import make_run_dir
from selfplay.arena.standings import results_of
from selfplay.arena.stats import error_summary
from selfplay.games.core import outcome_of, with_options
from selfplay.games.registry import game_class


def schedule(names: list[str], kind: str, candidates: list[str] | None = None, size: int = 2) -> list[tuple[str, ...]]:
    """Tables of ``size`` participants (the game's free seats): every combination (round-robin), or those that
    include a candidate (gauntlet). Two-role games: every pair, or each candidate against everyone else."""
    if len(names) < size:
        raise ValueError(
            f"this game seats {size} agents: a tournament needs at least {size} participants, got "
            f"{len(names)} ({', '.join(names)}); add e.g. random"
        )
    if kind == "round-robin":
        return list(combinations(names, size))
    if kind == "gauntlet":
        missing = [c for c in candidates or [] if c not in names]
        if not candidates or missing:
            raise ValueError(f"gauntlet needs --candidates among the participants {names}; unknown: {missing}")
        return [t for t in combinations(names, size) if any(c in t for c in candidates)]
    raise ValueError(f"unknown schedule {kind!r}: expected round-robin or gauntlet")


def self_play_tables(names: list[str], size: int) -> list[tuple[str, ...]]:
    """One table per participant with every free seat its own: the diagonal of the score matrix, and the measure of a
    cooperative team (a participant is judged by how well it plays with itself)."""
    return [(n,) * size for n in names]


def wants_self_play(choice: str, outcome_kind: str) -> bool:
    """``--self-play``: ``auto`` plays the diagonal for cooperative and general-sum games (where playing with oneself
    is a measure; in a zero-sum game it only shows the seat advantage), ``yes`` and ``no`` as said."""
    if choice not in ("auto", "yes", "no"):
        raise ValueError(f"--self-play {choice!r}: expected auto, yes or no")
    return choice == "yes" or (choice == "auto" and outcome_kind in ("cooperative", "general_sum"))


def table_matches(
    roles, table: tuple[str, ...], games: int, *, seed: int, key: str, fixed: dict[str, str] | None = None
) -> list[Match]:
    """Matches of one table: each seed played once per seating (cyclic rotations over the free seats), so game i
    uses seed ``seed + i // seatings``; ``key`` (``record_key``) marks them as this tournament's games, and a table of
    one participant in every seat is marked ``selfplay``."""
    count = len(seatings(roles, list(table), fixed))
    if games < count or games % count:
        raise ValueError(
            f"--games {games}: expected a positive multiple of {count}, the seatings of a table (each "
            f"seed is played once per seating, so every agent sits in every seat equally often)"
        )
    pairing = "|".join(table)
    matches = paired_matches(roles, list(table), games, seed=seed, meta={"pairing": pairing, "key": key}, fixed=fixed)
    for i, m in enumerate(matches):
        m.meta.update(index=i, unit=f"{pairing}|{i // count}", **({"selfplay": True} if len(set(table)) == 1 else {}))
    return matches


def run_tournament(
    game: str,
    participants: list[Participant],
    *,
    games: int = 20,
    kind: str = "round-robin",
    candidates: list[str] | None = None,
    out: str | Path = "runs/tournament",
    seed: int = 0,
    anchor: str | None = None,
    bootstrap_rounds: int = 200,
    concurrency: int = 256,
    progress: bool = True,
    game_options: dict | None = None,
    seats: dict[str, str] | None = None,
    self_play: str = "auto",
) -> dict:
    """Play the missing games of every table, then rate and report; returns the summary. ``seats``: roles held
    by a fixed agent spec in every game (e.g. a judge), not rated; the participants rotate through the others.
    ``self_play`` (``wants_self_play``): also a table of each participant with itself, reported as the diagonal."""
    game_options = game_options or {}
    cls = with_options(game_class(game), game_options)  # bad options fail before any game
    fixed_specs = _checked_seats(cls, participants, seats or {})
    fixed = {role: f"{role}={spec}" for role, spec in fixed_specs.items()}
    size = len(cls.roles) - len(fixed)
    store = open_store(out)
    recorded = list(store.episodes(with_steps=False))  # read once: the folder's game, then what is already played
    other = next((ep.game for ep in recorded if ep.game != cls.name), None)
    if other is not None:
        raise ValueError(f"output folder {str(out)!r} holds games of {other!r}, not {cls.name!r}: use another --out")
    names = [p.name for p in participants]
    tables = schedule(names, kind, candidates, size)
    if wants_self_play(self_play, outcome_of(cls).kind) and size > 1:
        tables += self_play_tables(names, size)
    games = _rounded_to_seatings(games, len(seatings(cls.roles, [f"seat{i}" for i in range(size)], fixed)))
    matches = _matches(cls, tables, participants, games=games, seed=seed, options=game_options, fixed=fixed_specs,
                       seats=fixed)  # fmt: skip
    done = {(ep.meta.get("key"), ep.meta.get("index")) for ep in recorded if ep.status != "error"}
    todo = [m for m in matches if (m.meta["key"], m.meta["index"]) not in done]
    if todo:
        print(f"playing {len(todo)} games ({len(matches) - len(todo)} already recorded) over {len(tables)} tables")
        needed = {n for m in todo for n in m.agents.values()}
        agents = _agents(participants, fixed_specs, fixed=fixed, needed=needed, seed=seed)
        play(lambda: cls(**game_options), todo, agents, store=store, concurrency=concurrency,
             progress="tournament" if progress else False, options=game_options)  # fmt: skip
    wanted = {(m.meta["key"], m.meta["index"]) for m in matches}
    episodes = [ep for ep in store.episodes() if (ep.meta.get("key"), ep.meta.get("index")) in wanted]
    from selfplay.arena.report import write_report  # matplotlib loads only when a report is written

    errors = error_summary(episodes)
    if errors and all(ep.status == "error" for ep in episodes):
        raise RuntimeError(f"nothing to rate: {errors}")
    figures, optimum = exact_figures(lambda: cls(**game_options), participants, seed) if not fixed else ({}, None)
    summary = write_report(
        Path(out), cls, episodes, results_of(episodes, fixed), anchor=anchor, rounds=bootstrap_rounds,
        steps={p.name: p.step for p in participants if p.step is not None}, seed=seed, exact=figures, fixed=fixed,
        team_optimum=optimum,
    )  # fmt: skip
    summary["errors"] = errors
    return summary


def _matches(
    cls, tables, participants, *, games: int, seed: int, options: dict, fixed: dict[str, str], seats: dict[str, str]
) -> list[Match]:
    """Every table's matches, each keyed by what makes a recorded game reusable (``record_key``); ``fixed``: the
    seats' specs, ``seats``: the names their agents play under."""
    by_name = {p.name: p for p in participants}
    keys = {
        t: record_key(cls.name, options, seed=seed, participants=[by_name[n] for n in t], fixed=fixed) for t in tables
    }
    return [m for t in tables for m in table_matches(cls.roles, t, games, seed=seed, key=keys[t], fixed=seats)]


def _checked_seats(cls, participants: list[Participant], seats: dict[str, str]) -> dict[str, str]:
    """The fixed seats, checked, with every participant's spec: ValueError names the bad one before anything loads."""
    names = [p.name for p in participants]
    if len(set(names)) != len(names):
        raise ValueError(f"participant names must be unique: {names}")
    for p in participants:
        check_spec(p.spec)  # an unknown or malformed spec, or a bad sampling option, fails here before anything loads
    for role, spec in seats.items():
        if role not in cls.roles:
            raise ValueError(f"seat {role!r} is not a role of {cls.name}: expected among {', '.join(cls.roles)}")
        parse_spec(spec)
    return dict(seats)


def _rounded_to_seatings(games: int, rounds: int) -> int:
    """``games`` rounded up to a multiple of the seatings, as play does: every participant in every seat equally
    often (said on stderr when it changes)."""
    if games % rounds == 0:
        return games
    rounded = -(-games // rounds) * rounds
    print(
        f"playing {rounded} games per table, not {games}: a multiple of the {rounds} seatings, so every "
        f"participant sits in every seat equally often",
        file=sys.stderr,
    )
    return rounded


def _agents(participants, fixed_specs: dict[str, str], *, fixed: dict[str, str], needed: set[str], seed: int) -> dict:
    """The agents the missing games need: each participant (its own seed) and each fixed seat's agent."""
    agents = {
        p.name: build_agent(p.spec, seed=seed + i, name=p.name) for i, p in enumerate(participants) if p.name in needed
    }
    agents.update(
        {
            name: build_agent(fixed_specs[role], seed=seed + 7919, name=name)
            for role, name in fixed.items()
            if name in needed
        }
    )
    return agents


def exact_figures(
    make_game, participants: list[Participant], seed: int = 0
) -> tuple[dict[str, dict[str, float]], float | None]:
    """Exact figures of each participant whose policy is known exactly, all seats playing it, for games that can be
    enumerated: ``random`` (uniform), ``expert`` (when the game states its probabilities) and model agents with
    constrained decoding (read off the model; a LoRA or clone checkpoint through each role's weights). Each gets its
    ``exploitability`` (NashConv / n); in a cooperative game also its ``team_value`` in self-play, returned with the
    best joint policy's (``exact.team_optimum``; None otherwise), since a babbling equilibrium has NashConv 0. Others
    are left out."""
    from selfplay.games import exact

    game = make_game()
    if not exact.is_enumerable(type(game)) or game.deals() is None:
        return {}, None
    try:
        tree = exact.build_tree(make_game, max_nodes=50 * exact.READ_OFF_STATES)
    except ValueError:  # too large to enumerate
        return {}, None
    readable = len(tree.infostates()) <= exact.READ_OFF_STATES  # a model's policy is read off one prompt per state
    team = outcome_of(game).kind == "cooperative"
    optimum = exact.team_optimum(tree) if team else None
    out = {}
    for i, p in enumerate(participants):
        spec = parse_spec(p.spec)
        try:
            if spec.kind == "random":
                policy = exact.uniform_policy(tree)
            elif spec.kind == "expert":
                policy = exact.expert_policy(tree, make_game)
            elif spec.kind in MODEL_KINDS and readable:  # exact only under constrained decoding (else ValueError)
                policy = build_agent(p.spec, seed=seed + i, name=p.name).tabular_policy(tree)
            else:  # a served model (probabilities unknown), or too many states to read a model off at
                continue
        except ValueError:  # an expert that does not state its probabilities, a model sampling free text
            continue
        figures = exact.exploitability(tree, policy)
        out[p.name] = {"exploitability": figures.exploitability, **({"team_value": figures.value[0]} if team else {})}
    return out, optimum


def build_parser() -> argparse.ArgumentParser:
    """The ``selfplay tournament`` command line."""
    parser = argparse.ArgumentParser(
        prog="selfplay tournament", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "game",
        help="a registered name, module:Class, path/to/file.py[:Class] (the class may be left "
        "out when the file defines one game) or openspiel:/textarena:/pettingzoo: GAME",
    )
    parser.add_argument("--agents", nargs="*", default=[], metavar="SPEC", help="agent specs (also NAME=SPEC)")
    parser.add_argument("--run", action="append", default=[], help="a training run directory: its checkpoints play")
    parser.add_argument(
        "--run-options",
        default="",
        metavar="K=V,...",
        help="sampling options for the checkpoints, e.g. temperature=0,constrained=true",
    )
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="game constructor option")
    parser.add_argument(
        "--seats",
        nargs="+",
        metavar="ROLE=SPEC",
        help="roles held by a fixed, unrated agent in every game (e.g. judge=expert)",
    )
    parser.add_argument(
        "--games",
        type=int,
        default=20,
        help="games per table (default 20), rounded up to a multiple of its seatings (even for two "
        "players) with a note",
    )
    parser.add_argument("--schedule", default="round-robin", choices=["round-robin", "gauntlet"])
    parser.add_argument("--candidates", nargs="*", help="gauntlet: the agents that play everyone else")
    parser.add_argument(
        "--self-play",
        default="auto",
        choices=["auto", "yes", "no"],
        help="also play each participant with itself (the score matrix's diagonal): auto (default) "
        "for cooperative and general-sum games, where a cooperative team is ranked by it",
    )
    parser.add_argument("--anchor", help="agent pinned to rating 0 (default: random if present, else the mean)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap rounds for intervals (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--out", default="runs/tournament", help="output directory (default runs/tournament)")
    return parser


def _checked(args: argparse.Namespace) -> tuple[list[Participant], str | None]:
    """The participants and the anchor the command line names, each bad value a ValueError naming it."""
    participants = [Participant(*(s.split("=", 1) if "=" in s.split(":")[0] else (s, s))) for s in args.agents]
    for run in args.run:
        participants += checkpoint_participants(run, args.run_options)
        note = trained_elsewhere(run, args.game, parse_key_values(args.option))
        if note:
            print(note, file=sys.stderr)
    if len(participants) < 2:
        raise ValueError("a tournament needs at least two participants (--agents and/or --run)")
    participants = distinct_names(participants)
    for flag, value in (("--games", args.games), ("--concurrency", args.concurrency)):
        if value < 1:
            raise ValueError(f"{flag} {value}: expected a number >= 1")
    make_run_dir(args.out, "--out")
    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap}: expected a number of bootstrap rounds >= 1")
    if args.anchor is not None and args.anchor not in {p.name for p in participants}:
        raise ValueError(
            f"--anchor {args.anchor!r} is not a participant: expected one of {', '.join(p.name for p in participants)}"
        )
    anchor = args.anchor or ("random" if any(p.name == "random" for p in participants) else None)
    return participants, anchor


def main(argv: list[str] | None = None) -> int:
    """``selfplay tournament GAME --agents SPEC ... [--run RUN_DIR] ...``."""
    args = build_parser().parse_args(argv)
    try:
        participants, anchor = _checked(args)
        seats = parse_seats(args.seats, with_options(game_class(args.game), parse_key_values(args.option)).roles)
        with settled_heap():
            summary = run_tournament(
                args.game,
                participants,
                games=args.games,
                kind=args.schedule,
                candidates=args.candidates,
                out=args.out,
                seed=args.seed,
                anchor=anchor,
                bootstrap_rounds=args.bootstrap,
                concurrency=args.concurrency,
                game_options=parse_key_values(args.option),
                seats=seats,
                self_play=args.self_play,
            )
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"selfplay tournament: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the games finished so far are recorded; the same command plays only the rest
        print(
            f"\nselfplay tournament: interrupted; the games finished are kept in {args.out} and the same command "
            f"plays only the missing ones",
            file=sys.stderr,
        )
        return 130
    except RuntimeError as exc:  # every game ended in an error
        print(f"selfplay tournament: error: {exc} (see `selfplay show {args.out}`)", file=sys.stderr)
        return 1
    print(summary["table"])
    print(f"\nreport: {Path(args.out) / 'report.html'} (also report.md, summary.json, matches.csv)")
    if summary["errors"]:
        print(f"selfplay tournament: error: {summary['errors']} (see `selfplay show {args.out}`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
