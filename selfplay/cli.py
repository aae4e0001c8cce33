"""The ``selfplay`` command, above every layer: list, check and play games, show records; train and tournament
delegate. Each subcommand imports what it needs when it runs, so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import os
import sys

from selfplay.commands import (
    cmd_check,
    cmd_doctor,
    cmd_export,
    cmd_games,
    cmd_play,
    cmd_recipes,
    cmd_serve,
    cmd_show,
)

DELEGATED = {"train": "selfplay.train", "tournament": "selfplay.arena.tournament"}


def _add_games(sub) -> None:
    """``selfplay games``."""
    p = sub.add_parser("games", help="list the registered games")
    p.set_defaults(fn=cmd_games)


def _add_check_game(sub) -> None:
    """``selfplay check-game``."""
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


def _add_play(sub) -> None:
    """``selfplay play``."""
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


def _add_show(sub) -> None:
    """``selfplay show``."""
    p = sub.add_parser("show", help="list a run's episodes or print one transcript")
    p.add_argument("run", help="run directory or episodes.sqlite")
    p.add_argument("--episode", help="episode id (a unique prefix is enough)")
    p.add_argument("--limit", type=int, default=20, help="episodes to list (default 20)")
    p.set_defaults(fn=cmd_show)


def _add_export(sub) -> None:
    """``selfplay export``."""
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


def _add_serve(sub) -> None:
    """``selfplay serve``."""
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


def _add_recipes(sub) -> None:
    """``selfplay recipes``."""
    p = sub.add_parser("recipes", help="list the training recipes selfplay train can run by name")
    p.set_defaults(fn=cmd_recipes)


def _add_doctor(sub) -> None:
    """``selfplay doctor``."""
    p = sub.add_parser("doctor", help="check this machine: packages, embedded model, GPU, sandbox isolation")
    p.set_defaults(fn=cmd_doctor)


def build_parser() -> argparse.ArgumentParser:
    """The ``selfplay`` command line: one subcommand per job."""
    from selfplay import __version__

    parser = argparse.ArgumentParser(
        prog="selfplay",
        description="Multi-agent self-play for language models.",
        epilog="Start with: selfplay train configs/quickstart.yaml (README.md has every command).",
    )
    parser.add_argument("--version", action="version", version=f"selfplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_games(sub)
    _add_check_game(sub)
    _add_play(sub)
    _add_show(sub)
    _add_export(sub)
    _add_serve(sub)
    _add_recipes(sub)
    _add_doctor(sub)
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
