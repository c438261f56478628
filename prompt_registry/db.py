"""The learning store: one SQLite file (``<data_dir>/learning.sqlite``) holding prompt versions,
rollouts, their spans and the rewards each prompt version earned, so history survives restarts.

Plain ``sqlite3`` in WAL mode; one connection per `LearningDB`, guarded by a lock, so a
`RolloutRecorder` (graph threads) and a `PromptRegistry` (CLI, optimizer) can share it. Several
processes may open the same file: writes take SQLite's lock, with a busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_FILENAME = "learning.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS prompt_versions (
    name      TEXT NOT NULL,
    version   TEXT NOT NULL,
    text      TEXT NOT NULL,
    parent    TEXT,
    created   REAL NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('candidate', 'active', 'rejected', 'retired')),
    source    TEXT NOT NULL DEFAULT 'manual',
    note      TEXT NOT NULL DEFAULT '',
    n         INTEGER NOT NULL DEFAULT 0,
    mean      REAL NOT NULL DEFAULT 0.0,
    m2        REAL NOT NULL DEFAULT 0.0,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_version
    ON prompt_versions (name) WHERE status = 'active';
CREATE TABLE IF NOT EXISTS prompt_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL,
    version   TEXT NOT NULL,
    event     TEXT NOT NULL,
    at        REAL NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id      TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    task_id         TEXT,
    task_json       TEXT,
    started         REAL NOT NULL,
    finished        REAL,
    status          TEXT NOT NULL,
    reward          REAL,
    passed          INTEGER,
    attempts        INTEGER,
    tokens          INTEGER,
    prompt_versions TEXT NOT NULL DEFAULT '{}',
    agl_rollout_id  TEXT
);
CREATE INDEX IF NOT EXISTS rollouts_finished ON rollouts (finished);
CREATE TABLE IF NOT EXISTS spans (
    rollout_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    start       REAL NOT NULL,
    end         REAL NOT NULL,
    attributes  TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq)
);
CREATE TABLE IF NOT EXISTS rewards (
    rollout_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    reward      REAL NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (rollout_id, name)
);
CREATE INDEX IF NOT EXISTS rewards_by_version ON rewards (name, version);
"""


class LearningDB:
    """A connection to the learning SQLite file (created with its schema on first use)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._conn.executescript(SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> LearningDB:
        """The learning store of a mesh whose settings say ``data_dir``."""
        return cls(Path(data_dir) / DB_FILENAME)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction; commits on success, rolls back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read query."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LearningDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_db(target: LearningDB | Path | str) -> LearningDB:
    """A `LearningDB` for a path (or the given one)."""
    return target if isinstance(target, LearningDB) else LearningDB(target)
