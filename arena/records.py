"""Episode records and the embedded store they live in (SQLite in WAL mode, one file per run).

Each finished episode is written in one transaction with all its steps, so a process killed at any moment
leaves every earlier episode complete and no partial one: SQLite's journal rolls back an unfinished write.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfplay.arena import rundir
from selfplay.games.core import Message, Outcome

SCORES = {"win": 1.0, "draw": 0.5, "loss": 0.0}  # the one score map: what a result is worth in ratings


@dataclass
class Attempt:
    """One attempt at one sample of one turn: what the role saw, what it wrote, what came of it."""

    turn: int
    role: str
    sample: int
    attempt: int
    agent: str
    messages: list[Message]  # the game's chat view of this turn (with any re-prompts)
    text: str
    action: str | None = None  # the action text applied (the agent's, or the fallback's); None if none
    failure: str | None = None  # Failure code when the text was not a usable action
    error: str | None = None  # the message shown on a re-prompt
    fallback: str | None = None  # "random" / "penalty" / "forfeit" when the invalid policy stepped in
    reward: float | None = None  # this sample's reward (for training); invalid attempts get the penalty
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    allowed: list[list[int] | None] | None = None  # token ids allowed at each completion step (constrained)
    temperature: float | None = None  # the sampling temperature of logprobs (model agents)
    seconds: float = 0.0
    advantage: float | None = None  # the advantage the update gave this sample (set by the trainer afterwards)
    read: list[Message] | None = None  # what the agent read, where it differs from ``messages`` (its observer's view)

    @property
    def prompt(self) -> list[Message]:
        """The messages the agent read: its observer's view (a compact line) where it had one, else the game's chat."""
        return self.read if self.read is not None else self.messages


@dataclass
class Episode:
    """One finished game: who played which role, every step, the rewards and how it ended."""

    game: str
    seed: int
    agents: dict[str, str]  # role -> agent name
    steps: list[Attempt] = field(default_factory=list)  # every attempt of every turn, in order (the table: steps)
    rewards: dict[str, float] = field(default_factory=dict)
    status: str = "running"  # done | forfeit | truncated | error
    error: str | None = None
    num_turns: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def outcome(self, role: str) -> str:
        """'win', 'draw' or 'loss' for ``role`` under the game's outcome model recorded in ``meta["outcome"]``
        (``Outcome.result``); 'error' when the episode ended without rewards."""
        if not self.rewards:
            return "error"
        model = self.meta.get("outcome") or {}
        outcome = Outcome(model.get("kind", "zero_sum"), success=model.get("success"))
        return outcome.result(self.rewards, role, (0.0, 0.0))

    def pairwise(self, a: str, b: str) -> float:
        """Role ``a``'s result against role ``b`` alone, from their rewards: 1 higher, 0.5 equal, 0 lower (how a
        game of three or more players becomes pairwise comparisons for Bradley-Terry ratings)."""
        ra, rb = self.rewards[a], self.rewards[b]
        return 1.0 if ra > rb else 0.5 if ra == rb else 0.0

    def score(self, role: str) -> float:
        """``role``'s result as a rating score: win 1, draw 0.5, loss 0 (``SCORES``)."""
        return SCORES[self.outcome(role)]

    def learner_roles(self) -> list[str]:
        """The roles the trained weights played (recorded by the trainer in ``meta``; none outside training)."""
        return list(self.meta.get("learners", ()))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY, game TEXT NOT NULL, seed INTEGER NOT NULL, agents TEXT NOT NULL,
    rewards TEXT NOT NULL, status TEXT NOT NULL, error TEXT, num_turns INTEGER NOT NULL,
    num_steps INTEGER NOT NULL, options TEXT NOT NULL, meta TEXT NOT NULL, started REAL, seconds REAL
);
CREATE TABLE IF NOT EXISTS steps (
    episode_id TEXT NOT NULL REFERENCES episodes(id), idx INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (episode_id, idx)
);
CREATE INDEX IF NOT EXISTS episodes_game ON episodes(game);
"""
_EPISODE_COLUMNS = (
    "id",
    "game",
    "seed",
    "agents",
    "rewards",
    "status",
    "error",
    "num_turns",
    "options",
    "meta",
    "started",
    "seconds",
)
_JSON_COLUMNS = {"agents", "rewards", "options", "meta"}


class RecordStore:
    """The run's episode database: ``add`` writes whole episodes atomically, the readers yield them back."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if create:
            rundir.make_run_dir(self.path.parent, "run directory")
        elif not self.path.is_file():
            raise FileNotFoundError(
                f"{str(self.path)!r} does not exist: expected a run directory holding "
                f"{rundir.EPISODES} or the file itself"
            )
        self.db = sqlite3.connect(self.path, timeout=60)
        try:
            if not create:  # a reader changes nothing in the file, not even its journal mode
                if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='episodes'").fetchone():
                    raise sqlite3.DatabaseError("it has no episodes table")
                return
            for attempt in range(100):  # switching to WAL can meet another rank's lock without waiting for it
                try:
                    self.db.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 99:
                        raise
                    time.sleep(0.05)
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
            self.db.executescript(_SCHEMA)
        except sqlite3.OperationalError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
            self.db.close()
            raise ValueError(f"{str(self.path)!r} is not an episode database ({exc})") from None

    def add(self, episodes: Episode | list[Episode]) -> None:
        """Write finished episodes, each with all its steps, in one transaction."""
        episodes = [episodes] if isinstance(episodes, Episode) else episodes
        with self.db:
            for ep in episodes:
                row = [json.dumps(getattr(ep, c)) if c in _JSON_COLUMNS else getattr(ep, c) for c in _EPISODE_COLUMNS]
                self.db.execute(
                    f"INSERT INTO episodes ({', '.join(_EPISODE_COLUMNS)}, num_steps) VALUES ({', '.join('?' * len(row))}, ?)",
                    [*row, len(ep.steps)],
                )
                self.db.executemany(
                    "INSERT INTO steps (episode_id, idx, data) VALUES (?, ?, ?)",
                    [(ep.id, i, json.dumps(asdict(s))) for i, s in enumerate(ep.steps)],
                )

    def set_advantages(self, advantages: dict[tuple[str, int], float]) -> None:
        """Record the advantage each trained sample got, by (episode id, step index), in one transaction."""
        with self.db:
            self.db.executemany(
                "UPDATE steps SET data = json_set(data, '$.advantage', ?) WHERE episode_id = ? AND idx = ?",
                [
                    (a if a is None or math.isfinite(a) else None, e, i)  # JSON has no nan
                    for (e, i), a in advantages.items()
                ],
            )

    def count(self, **where: Any) -> int:
        """Number of stored episodes matching the column filters."""
        clause, args = _where(where)
        return self.db.execute(f"SELECT COUNT(*) FROM episodes{clause}", args).fetchone()[0]

    def episodes(self, with_steps: bool = True, **where: Any) -> Iterator[Episode]:
        """Stored episodes in insertion order, filtered by column values (e.g. ``game="tictactoe"``)."""
        clause, args = _where(where)
        cursor = self.db.execute(f"SELECT {', '.join(_EPISODE_COLUMNS)} FROM episodes{clause} ORDER BY rowid", args)
        for row in cursor.fetchall():
            values = {c: json.loads(v) if c in _JSON_COLUMNS else v for c, v in zip(_EPISODE_COLUMNS, row)}
            episode = Episode(**values)
            if with_steps:
                episode.steps = self._steps(episode.id)
            yield episode

    def episode(self, episode_id: str) -> Episode:
        """One episode by id (a unique prefix is enough)."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM episodes WHERE id LIKE ?", (episode_id + "%",))]
        if len(ids) != 1:
            raise KeyError(f"episode {episode_id!r} {'is ambiguous' if ids else 'not found'} in {self.path}")
        return next(self.episodes(id=ids[0]))

    def delete_after_step(self, step: int) -> int:
        """Remove episodes whose ``meta.step`` is beyond ``step`` (rollouts a resumed run plays again)."""
        with self.db:
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM episodes WHERE CAST(json_extract(meta, '$.step') AS INTEGER) > ?", (step,)
                )
            ]
            self.db.executemany("DELETE FROM steps WHERE episode_id = ?", [(i,) for i in ids])
            self.db.executemany("DELETE FROM episodes WHERE id = ?", [(i,) for i in ids])
        return len(ids)

    def clear(self) -> int:
        """Remove every episode (a run started over in its directory); the number removed."""
        with self.db:
            count = self.db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
            self.db.execute("DELETE FROM steps")
            self.db.execute("DELETE FROM episodes")
        return count

    def integrity(self) -> list[str]:
        """Episodes whose stored step count differs from the steps present (always empty unless corrupted)."""
        rows = self.db.execute(
            "SELECT e.id FROM episodes e LEFT JOIN steps s ON s.episode_id = e.id "
            "GROUP BY e.id HAVING COUNT(s.idx) != e.num_steps"
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def _steps(self, episode_id: str) -> list[Attempt]:
        rows = self.db.execute("SELECT data FROM steps WHERE episode_id = ? ORDER BY idx", (episode_id,))
        return [Attempt(**json.loads(r[0])) for r in rows]


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    for key in filters:
        if key not in _EPISODE_COLUMNS:
            raise ValueError(f"cannot filter episodes by {key!r}: expected one of {', '.join(_EPISODE_COLUMNS)}")
    if not filters:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in filters), list(filters.values())


def open_store(run_dir: str | Path) -> RecordStore:
    """The store of a run directory (``RUN/episodes.sqlite``), or a path to the file itself; created if absent."""
    path = Path(run_dir)
    if path.is_dir() or not path.suffix:
        path = path / rundir.EPISODES
    return RecordStore(path)


def read_store(run: str | Path) -> RecordStore:
    """The existing store of a run directory or episodes file, for reading: nothing is created, and a path that
    holds no episode database is a ``FileNotFoundError`` / ``ValueError`` naming it."""
    path = Path(run)
    if not path.exists():
        raise FileNotFoundError(f"run {str(run)!r} does not exist: expected a run directory or an episodes.sqlite file")
    return RecordStore(path / rundir.EPISODES if path.is_dir() else path, create=False)
