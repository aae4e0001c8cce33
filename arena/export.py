"""Episodes as datasets: one row per attempt of every turn, as JSON Lines or Parquet.

    selfplay export runs/kuhn_poker_tiny --format jsonl            # runs/kuhn_poker_tiny/episodes.jsonl
    selfplay export runs/tournament --format parquet --out t.parquet

Columns: game, options (JSON text), seed, episode, status, step (the training step, when a trainer recorded it),
split (train / eval / probe / play), opponent (in an evaluation episode, the baseline the learner faced, or mirror for
self-play; else None), turn, role, agent, sample, attempt, prompt (the messages the agent read: its observer's view,
e.g. the one-line compact observation, else the game's chat), game_messages (the game's chat view of the turn),
completion (its text), action (the action applied, when valid), failure and error (when not), fallback, reward
(the sample's training reward: its own, the final reward of its role, or the invalid-action penalty), episode_reward
(the role's final reward), learner (whether trained weights played it), advantage (what the update gave the sample,
for trained samples; written back by the trainer after each update); with ``--tokens`` also prompt_ids,
completion_ids and logprobs (each sampled token's log-probability, as training used it) for model agents' samples,
for offline RL or distillation. Load either with
``datasets.load_dataset("json", data_files=PATH)`` / ``load_dataset("parquet", data_files=PATH)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfplay.arena.records import read_store

FORMATS = ("jsonl", "parquet")


def rows(run: str | Path, tokens: bool = False) -> Iterator[dict[str, Any]]:
    """One dict per recorded step of every episode of ``run`` (a run directory or an episodes.sqlite file); with
    ``tokens`` also the token ids and sampling log-probabilities of model agents' samples (None for the others)."""
    store = read_store(run)
    try:
        for ep in store.episodes():
            split = (
                "eval"
                if "eval" in ep.meta
                else "probe"
                if "probe" in ep.meta
                else "train"
                if "step" in ep.meta
                else "play"
            )
            learners = set(ep.learner_roles())
            for s in ep.steps:
                row = {
                    "game": ep.game,
                    "options": json.dumps(ep.options, sort_keys=True),
                    "seed": ep.seed,
                    "episode": ep.id,
                    "status": ep.status,
                    "step": ep.meta.get("step"),
                    "split": split,
                    "turn": s.turn,
                    "role": s.role,
                    "agent": s.agent,
                    "sample": s.sample,
                    "attempt": s.attempt,
                    "prompt": [{"role": m["role"], "content": m["content"]} for m in s.prompt],
                    "game_messages": [{"role": m["role"], "content": m["content"]} for m in s.messages],
                    "opponent": ep.meta.get("eval"),
                    "completion": s.text,
                    "action": s.action if s.failure is None else None,
                    "failure": s.failure,
                    "error": s.error,
                    "fallback": s.fallback,
                    "reward": s.reward,
                    "episode_reward": ep.rewards.get(s.role),
                    "learner": s.role in learners,
                    "advantage": s.advantage,
                }
                if tokens:
                    row.update(prompt_ids=s.prompt_ids, completion_ids=s.completion_ids, logprobs=s.logprobs)
                yield row
    finally:
        store.close()


def export(
    run: str | Path, fmt: str = "jsonl", out: str | Path | None = None, tokens: bool = False
) -> tuple[Path, int]:
    """Write ``run``'s episodes as ``fmt`` to ``out`` (default: next to the records), ``tokens``: with token ids and
    log-probabilities; (path, rows written)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    source = Path(run)
    read_store(source).close()  # a path that holds no records is named before any file is written
    folder = source if source.is_dir() else source.parent
    path = Path(out) if out else folder / f"episodes.{fmt}"
    try:  # the output is checked writable before the rows are read
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        raise ValueError(f"--out {str(path)!r}: cannot write there ({exc.strerror}: {exc.filename!r})") from None
    if fmt == "jsonl":
        count = 0
        with open(path, "w") as f:
            for row in rows(source, tokens):
                f.write(json.dumps(row) + "\n")
                count += 1
        return path, count
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install pyarrow (or use --format jsonl)") from None
    table = pa.Table.from_pylist(list(rows(source, tokens)), schema=_schema(pa, tokens))
    pq.write_table(table, path)
    return path, table.num_rows


def _schema(pa, tokens: bool = False):
    text, number = pa.string(), pa.int64()
    ids = [("prompt_ids", pa.list_(number)), ("completion_ids", pa.list_(number)), ("logprobs", pa.list_(pa.float64()))]
    return pa.schema(
        [
            ("game", text),
            ("options", text),
            ("seed", number),
            ("episode", text),
            ("status", text),
            ("step", number),
            ("split", text),
            ("turn", number),
            ("role", text),
            ("agent", text),
            ("sample", number),
            ("attempt", number),
            ("prompt", pa.list_(pa.struct([("role", text), ("content", text)]))),
            ("completion", text),
            ("action", text),
            ("failure", text),
            ("error", text),
            ("fallback", text),
            ("reward", pa.float64()),
            ("episode_reward", pa.float64()),
            ("learner", pa.bool_()),
            ("advantage", pa.float64()),
            *(ids if tokens else []),
        ]
    )
