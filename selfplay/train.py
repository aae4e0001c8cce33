"""``selfplay train`` and ``accelerate launch -m selfplay.train``: read and check the config, then train.

Everything is checked before torch is imported: the YAML, every key and value, the game and its options, each
curriculum arm and scripted opponent. A bad one exits with status 2 and one line naming it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from selfplay.recipes import PACKAGED as QUICKSTART
from selfplay.recipes import anchor_game
from selfplay.recipes import resolve as resolve_recipe


def check_config(cfg) -> None:
    """Build the game once with its options and each curriculum arm, and each agent the run will build;
    ValueError names what is wrong."""
    from selfplay.agents.spec_syntax import parse_spec
    from selfplay.games import exact
    from selfplay.games.registry import game_class, make_game
    from selfplay.training.binding import bind_game
    from selfplay.training.names import AVERAGE, MIRROR, OPPONENT, POOL, arm_options

    bind_game(cfg)
    _check_paths(cfg.run)
    _check_resume(cfg)
    model = parse_spec(cfg.model)
    if model.kind not in ("smollm2", "tiny", "hf"):
        raise ValueError(
            f"config key 'model' = {cfg.model!r}: {model.kind!r} agents have no weights to train; expected "
            f"smollm2, tiny or hf:PATH (a model folder or checkpoint); {model.kind} plays as an opponent "
            f"(evaluation.opponents, opponents.seats)"
        )
    if model.kind == "hf":  # the base must be one model, before any loads (a lora or clone checkpoint is not)
        from selfplay.agents.checkpoint_paths import one_model

        try:
            one_model(model.arg)
        except ValueError as exc:
            raise ValueError(f"config key 'model' = {cfg.model}: {exc}") from None
    cur = cfg.curriculum
    specs = [*(o for o in cfg.evaluation.opponents if o != MIRROR), *cfg.opponents.seats.values(), cfg.model]
    if cfg.opponents.scripted_prob:
        specs.append(cfg.opponents.scripted_opponent)
    if cur.option == OPPONENT:
        specs += [str(v) for v in cur.arms if str(v) not in (MIRROR, POOL)]
    for spec in specs:
        if spec == AVERAGE:
            if not (
                exact.is_two_player_zero_sum(game_class(cfg.game)) and cfg.sampling.constrained and cfg.evaluation.exact
            ):
                raise ValueError(
                    f"opponent 'average' (the learner's exact average policy) needs a two-player zero-sum "
                    f"game that lists its deals, sampling.constrained=true and evaluation.exact=true; "
                    f"game {cfg.game!r} with constrained={cfg.sampling.constrained}"
                )
            continue
        parse_spec(spec)
    for value in (cur.arms if cur.option != OPPONENT else []) or [None]:
        make_game(cfg.game, **{**cfg.game_options, **(arm_options(cur.option, value) if value is not None else {})})


IDENTITY = ("game", "game_options", "model", "weights", "lora_r", "lora_alpha")  # what a resumed run must keep


def _check_resume(cfg) -> None:
    """Resuming continues the same experiment: a run directory whose checkpoints were trained on another game, model
    or weight layout is refused by name (its history and weights would be mixed with the new ones)."""
    import json
    from dataclasses import asdict

    from selfplay.arena.rundir import latest_checkpoint

    recorded = Path(cfg.run.out) / "config.json"
    if cfg.run.resume != "auto" or not recorded.is_file() or latest_checkpoint(cfg.run.out) is None:
        return
    old, new = json.loads(recorded.read_text()), asdict(cfg)
    changed = [k for k in IDENTITY if k in old and old[k] != new[k]]
    if changed:
        was = ", ".join(f"{k}={old[k]!r}" for k in changed)
        now = ", ".join(f"{k}={new[k]!r}" for k in changed)
        raise ValueError(
            f"config key 'run.out': {cfg.run.out!r} holds a run trained with {was}, which this config "
            f"would resume with {now}: choose another run.out for the new experiment"
        )


def _lock(run_dir: str):
    """An exclusive lock on ``RUN/.lock`` for this launch's main process (its other ranks share the directory), so a
    second training into the same run directory is refused instead of interleaving checkpoints and records."""
    import fcntl

    if os.environ.get("RANK", "0") != "0":
        return None
    handle = open(Path(run_dir) / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ValueError(
            f"config key 'run.out': {run_dir!r} is in use by another training ({holder}): wait for it "
            f"to end, or choose another run.out"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _check_paths(run) -> None:
    """The run directory can be created, and an explicit resume path is a complete checkpoint."""
    from selfplay.arena.rundir import is_complete, make_run_dir

    make_run_dir(run.out, "config key 'run.out'")
    if run.resume not in ("auto", "never") and not is_complete(run.resume):
        raise ValueError(
            f"config key 'run.resume': {run.resume!r} is not a complete checkpoint directory (expected "
            f"auto, never, or RUN/checkpoints/step_N with its COMPLETE marker)"
        )


def main(argv: list[str] | None = None) -> int:
    """``selfplay train [CONFIG.yaml] [key=value ...]``."""
    from selfplay.training.config import describe, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(
            "usage: selfplay train [CONFIG.yaml] [key=value ...]\n\n"
            "Without CONFIG.yaml: the quickstart recipe (SmolLM2 learns Kuhn poker by self-play in about a minute; "
            f"{QUICKSTART}).\n"
            "Keys go as section.key=value (update.lr=1e-4) or by their old flat name (lr=1e-4).\n\nkeys:\n" + describe()
        )
        return 0
    path = argv.pop(0) if argv and "=" not in argv[0] else None
    if path is None:
        print(f"selfplay train: no config given: the quickstart recipe ({QUICKSTART})", file=sys.stderr)
        path = str(QUICKSTART)
    try:
        path = resolve_recipe(path)
        config = load_config(path, argv)
        config.game = anchor_game(config.game, path)
        check_config(config)
        _held = _lock(config.run.out)  # held until the process ends
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"selfplay train: error: {exc}", file=sys.stderr)
        return 2
    from selfplay.training.metrics import quiet_libraries  # torch, transformers and accelerate load only now

    quiet_libraries()
    from selfplay.training.interrupt import StopRequest
    from selfplay.training.train import train

    try:
        with StopRequest() as stop:
            train(config, stop)
    except RuntimeError as exc:
        print(f"selfplay train: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `selfplay train | head`: the reader left, so the run ends as any pipeline stage would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 141
    except KeyboardInterrupt:  # the second Ctrl-C: no traceback, and where the run can pick up
        print(f"\nselfplay train: interrupted; {_where_to_resume(config.run.out)}", file=sys.stderr)
        return 130
    code, done = _report_errors(config.run.out), _steps_done(config.run.out)
    if stop.requested and done < config.run.steps:
        if os.environ.get("RANK", "0") == "0":
            print(
                f"selfplay train: stopped on request at step {done} of {config.run.steps}; the same command resumes",
                file=sys.stderr,
            )
        return code or 130
    return code


def _where_to_resume(run_dir: str) -> str:
    """Where the same command picks the run up: its last checkpoint, or the start."""
    from selfplay.arena.rundir import latest_checkpoint

    kept = latest_checkpoint(run_dir)
    if kept:
        return f"the last checkpoint is {kept} (the same command resumes from it)"
    return "no checkpoint was saved yet (the same command starts again)"


def _steps_done(run_dir: str) -> int:
    """The step of the run's latest checkpoint (0 without one)."""
    from selfplay.arena.rundir import checkpoint_step, latest_checkpoint

    kept = latest_checkpoint(run_dir)
    return checkpoint_step(kept) if kept else 0


def _report_errors(run_dir: str) -> int:
    """1 (and the count with the first traceback's last line on stderr) when any recorded episode ended in an
    error, else 0; only the main process reports."""
    if os.environ.get("RANK", "0") != "0":
        return 0
    from selfplay.arena.records import open_store
    from selfplay.arena.stats import error_summary

    store = open_store(run_dir)
    errors = error_summary(store.episodes(with_steps=False, status="error"))
    store.close()
    if errors:
        print(f"selfplay train: error: {errors} (see `selfplay show {run_dir}`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
