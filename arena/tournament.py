"""Tournaments: rate any set of agents on a game and write a report.

    selfplay tournament tictactoe --agents random expert --run runs/tictactoe --games 40 --out runs/tournament

Participants are agent specs (``random``, ``expert``, ``smollm2``, ``hf:PATH``, ...) and, with ``--run``, the
checkpoints of a training run (``step_000010`` ... as ``hf:`` agents). Schedules: ``round-robin`` (every pair)
or ``gauntlet`` (each ``--candidates`` agent against every other participant). Each pairing plays
``--games`` games, every seed twice with the seats swapped. All pairings are played at once through the arena,
so each model answers every pending turn of every pairing in one batched call. Re-running with the same
``--out`` reuses recorded games and plays only the missing ones. A participant that crashes forfeits its
games (recorded as AGENT_ERROR); the tournament goes on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from selfplay.agents.specs import build_agent, parse_key_values, parse_spec
from selfplay.arena.play import Match, paired_matches, play
from selfplay.arena.rundir import checkpoint_step, list_checkpoints
from selfplay.arena.records import Episode, open_store
from selfplay.arena.ratings import Result
from selfplay.games.registry import game_class


@dataclass
class Participant:
    name: str
    spec: str
    step: int | None = None  # training step, for checkpoints


def checkpoint_participants(run_dir: str | Path, options: str = "") -> list[Participant]:
    """One participant per complete checkpoint of a training run (shared weights: ``hf:`` on ``policy/``),
    with sampling ``options`` such as ``temperature=0,constrained=true``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    found = []
    for ckpt in list_checkpoints(run):
        policy = ckpt / "policy"
        if not (policy / "config.json").exists():
            raise FileNotFoundError(f"checkpoint {ckpt} has no plain model in policy/ (LoRA and clone runs: "
                                    f"name the adapter or clone directory with hf:PATH)")
        step = checkpoint_step(ckpt)
        found.append(Participant(f"step_{step}", f"hf:{policy}" + (f":{options}" if options else ""), step))
    if not found:
        raise FileNotFoundError(f"run {str(run_dir)!r} has no complete checkpoint under checkpoints/")
    return found


def schedule(names: list[str], kind: str, candidates: list[str] | None = None) -> list[tuple[str, str]]:
    """Pairings: every pair (round-robin), or each candidate against everyone else (gauntlet)."""
    if kind == "round-robin":
        return list(combinations(names, 2))
    if kind == "gauntlet":
        missing = [c for c in candidates or [] if c not in names]
        if not candidates or missing:
            raise ValueError(f"gauntlet needs --candidates among the participants {names}; unknown: {missing}")
        pairs = [(c, o) for c in candidates for o in names if o != c]
        return list(dict.fromkeys(tuple(sorted(p)) for p in pairs))
    raise ValueError(f"unknown schedule {kind!r}: expected round-robin or gauntlet")


def pairing_matches(roles, a: str, b: str, games: int, seed: int) -> list[Match]:
    """Paired matches of one pairing: game i uses seed ``seed + i // 2``; odd games swap the seats."""
    if len(roles) != 2:
        raise ValueError(f"tournaments rate two-role games; this game has roles {roles}")
    matches = paired_matches(roles, [a, b], games, seed, {"pairing": f"{a}|{b}"})
    for i, m in enumerate(matches):
        m.meta.update(index=i, unit=f"{a}|{b}|{i // 2}")
    return matches


def results_of(episodes: list[Episode]) -> list[Result]:
    """Rating results (draws as halves) from recorded tournament episodes; errored games are left out."""
    out = []
    for ep in episodes:
        if ep.status == "error" or "pairing" not in ep.meta:
            continue
        a, b = ep.meta["pairing"].split("|")
        role_a = next(r for r, n in ep.agents.items() if n == a)
        out.append(Result(a, b, ep.score(role_a), ep.meta["unit"]))
    return out


def run_tournament(game: str, participants: list[Participant], games: int = 20, kind: str = "round-robin",
                   candidates: list[str] | None = None, out: str | Path = "runs/tournament", seed: int = 0,
                   anchor: str | None = None, bootstrap_rounds: int = 200, concurrency: int = 256,
                   progress: bool = True, game_options: dict | None = None) -> dict:
    """Play the missing games of every pairing, then rate and report; returns the summary."""
    cls = game_class(game)
    game_options = game_options or {}
    cls(**game_options)  # bad options fail before any game
    names = [p.name for p in participants]
    if len(set(names)) != len(names):
        raise ValueError(f"participant names must be unique: {names}")
    if games < 2 or games % 2:
        raise ValueError(f"--games {games}: expected an even number >= 2 (each seed is played with seats swapped)")
    for p in participants:
        parse_spec(p.spec)  # an unknown or malformed spec fails here, before any game is played
    store = open_store(out)
    pairs = schedule(names, kind, candidates)
    done = {(ep.meta.get("pairing"), ep.meta.get("index")) for ep in store.episodes(with_steps=False)
            if ep.status != "error"}
    todo = [m for a, b in pairs for m in pairing_matches(cls.roles, a, b, games, seed)
            if (m.meta["pairing"], m.meta["index"]) not in done]
    if todo:
        needed = {n for m in todo for n in m.agents.values()}
        agents = {p.name: build_agent(p.spec, seed=seed + i, name=p.name) for i, p in enumerate(participants)
                  if p.name in needed}
        print(f"playing {len(todo)} games ({len(done)} already recorded) over {len(pairs)} pairings")
        play(lambda: cls(**game_options), todo, agents, store=store, concurrency=concurrency,
             progress="tournament" if progress else False, options=game_options)
    episodes = [ep for ep in store.episodes() if ep.meta.get("pairing") in {f"{a}|{b}" for a, b in pairs}]
    steps = {p.name: p.step for p in participants if p.step is not None}
    from selfplay.arena.report import write_report  # matplotlib loads only when a report is written

    exploit = exploitabilities(lambda: cls(**game_options), participants, seed)
    return write_report(Path(out), cls, episodes, results_of(episodes), names, anchor, bootstrap_rounds, steps, seed,
                        exploit)


def exploitabilities(make_game, participants: list[Participant], seed: int = 0) -> dict[str, float]:
    """Exact exploitability (NashConv / 2) of each participant whose policy is known exactly, for games that can be
    enumerated: ``random`` (uniform), ``expert`` (when the game states its probabilities) and model agents with
    constrained decoding (read off the model). Others are left out."""
    from selfplay.games import exact

    if not exact.is_enumerable(type(make_game())):
        return {}
    tree = exact.build_tree(make_game)
    out = {}
    for i, p in enumerate(participants):
        spec = parse_spec(p.spec)
        try:
            if spec.kind == "random":
                policy = exact.uniform_policy(tree)
            elif spec.kind == "expert":
                policy = exact.expert_policy(tree, make_game)
            else:
                agent = build_agent(p.spec, seed=seed + i, name=p.name)
                if not agent.sampling.constrained:
                    continue
                policy = agent.tabular_policy(tree)
        except ValueError:  # an expert that does not state its probabilities
            continue
        out[p.name] = exact.exploitability(tree, policy).exploitability
    return out


def main(argv: list[str] | None = None) -> int:
    """``selfplay tournament GAME --agents SPEC ... [--run RUN_DIR] ...``."""
    parser = argparse.ArgumentParser(prog="selfplay tournament", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("game", help="a registered name, module:Class or path/to/file.py:Class")
    parser.add_argument("--agents", nargs="*", default=[], metavar="SPEC", help="agent specs (also NAME=SPEC)")
    parser.add_argument("--run", action="append", default=[], help="a training run directory: its checkpoints play")
    parser.add_argument("--run-options", default="", metavar="K=V,...",
                        help="sampling options for the checkpoints, e.g. temperature=0,constrained=true")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="game constructor option")
    parser.add_argument("--games", type=int, default=20, help="games per pairing, an even number (default 20)")
    parser.add_argument("--schedule", default="round-robin", choices=["round-robin", "gauntlet"])
    parser.add_argument("--candidates", nargs="*", help="gauntlet: the agents that play everyone else")
    parser.add_argument("--anchor", help="agent pinned to rating 0 (default: random if present, else the mean)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap rounds for intervals (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--out", default="runs/tournament", help="output directory (default runs/tournament)")
    args = parser.parse_args(argv)
    try:
        participants = [Participant(*(s.split("=", 1) if "=" in s.split(":")[0] else (s, s))) for s in args.agents]
        for run in args.run:
            participants += checkpoint_participants(run, args.run_options)
        if len(participants) < 2:
            raise ValueError("a tournament needs at least two participants (--agents and/or --run)")
        anchor = args.anchor or ("random" if any(p.name == "random" for p in participants) else None)
        summary = run_tournament(args.game, participants, args.games, args.schedule, args.candidates, args.out,
                                 args.seed, anchor, args.bootstrap, args.concurrency, game_options=parse_key_values(args.option))
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"selfplay tournament: error: {exc}", file=sys.stderr)
        return 2
    print(summary["table"])
    print(f"\nreport: {Path(args.out) / 'report.html'} (also report.md, summary.json, matches.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
