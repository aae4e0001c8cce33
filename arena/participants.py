"""Who plays in a tournament: agent specs and a training run's checkpoints as named participants, and the key that
says whether a recorded game was played by the same participants (spec and model content)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from selfplay.agents.checkpoint_paths import checkpoint_policy, run_sampling
from selfplay.agents.spec_syntax import parse_spec
from selfplay.arena.rundir import checkpoint_step, list_checkpoints


@dataclass
class Participant:
    name: str
    spec: str
    step: int | None = None  # training step, for checkpoints


def checkpoint_participants(run_dir: str | Path, options: str = "") -> list[Participant]:
    """One participant per complete checkpoint of a training run (``hf:`` on its ``policy/``: one model, or each
    role with its own LoRA adapter or clone), sampling as the run's evaluation did (``run_sampling``), with
    ``options`` such as ``temperature=0,constrained=true`` taking precedence."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    given = {item.partition("=")[0].strip() for item in options.split(",") if item.strip()}
    found = []
    for ckpt in list_checkpoints(run):
        policy = ckpt / "policy"
        if checkpoint_policy(policy) is None:
            raise FileNotFoundError(
                f"checkpoint {ckpt} has no model in policy/: expected config.json (shared "
                f"weights) or one adapter or model folder per role"
            )
        step = checkpoint_step(ckpt)
        # spelled out, so the report shows how each checkpoint played (as its run evaluated, unless told otherwise)
        inherited = ",".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in run_sampling(ckpt).items()
            if k not in given
        )
        spelled = ",".join(filter(None, (inherited, options)))
        found.append(Participant(f"step_{step}", f"hf:{policy}" + (f":{spelled}" if spelled else ""), step))
    if not found:
        raise FileNotFoundError(f"run {str(run_dir)!r} has no complete checkpoint under checkpoints/")
    return found


def trained_elsewhere(run_dir: str | Path, game: str, options: dict) -> str | None:
    """A note when a run's checkpoints were trained on another game or other options (players=2 entering a
    players=3 tournament) than the tournament plays, else None."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    trained_game, trained = config.get("game"), config.get("game_options") or {}
    same_game = trained_game == game or (
        trained_game and Path(str(trained_game).partition(":")[0]).name == Path(game.partition(":")[0]).name
    )
    if same_game and trained == options:
        return None
    return (
        f"note: the checkpoints of {run_dir} were trained on {trained_game} with options {trained}; this "
        f"tournament plays {game} with options {options}"
    )


def distinct_names(participants: list[Participant]) -> list[Participant]:
    """Repeated names get ``#2``, ``#3`` suffixes, as ``play`` names repeated agents (``--agents random random``,
    or a step of the same number from two runs): each is its own participant, built with its own seed."""
    seen: dict[str, int] = {}
    out = []
    for p in participants:
        seen[p.name] = seen.get(p.name, 0) + 1
        out.append(p if seen[p.name] == 1 else replace(p, name=f"{p.name}#{seen[p.name]}"))
    return out


def record_key(
    game: str, options: dict, *, seed: int, participants: list[Participant], fixed: dict[str, str] | None = None
) -> str:
    """What determines a table's games: the game, its options, the seed and every participant's spec with the
    content hash of a model directory; recorded games are reused only under the same key."""
    body = {
        "game": game,
        "options": options,
        "seed": seed,
        "fixed": fixed or {},
        "participants": sorted([p.name, p.spec, _content_hash(p.spec)] for p in participants),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _content_hash(spec: str) -> str | None:
    """SHA-256 over the files of an ``hf:PATH`` model directory (names and bytes); None for other agents."""
    parsed = parse_spec(spec)
    if parsed.kind != "hf" or not Path(parsed.arg).exists():
        return None
    digest = hashlib.sha256()
    root = Path(parsed.arg)
    for path in sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file()):
        digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
