"""The learning store: prompt versions, rollouts, their spans and the rewards each prompt version
earned, so history survives restarts. Embedded default: one SQLite file
(``<data_dir>/learning.sqlite``, one host); with `Settings.database_url` the same tables in
Postgres, so one learning round reads every host's rollouts and a version it promotes is what
every host serves next.

One connection per `LearningDB`, guarded by a lock, so a `RolloutRecorder` (graph threads) and a
`PromptRegistry` (CLI, optimizer) can share it. Writers run one at a time: SQLite's write lock on
one host, one advisory lock in Postgres for the whole mesh (transactions here read, then write
what they read: a reward's running mean, a span's sequence number, the next version label).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foundation.database import Connection, Database, Row, SqliteDatabase, open_database
from foundation.settings import Settings

DB_FILENAME = "learning.sqlite"

_SCHEMA = """
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
    m2        REAL NOT NULL DEFAULT 0.0,{rowid}
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_version
    ON prompt_versions (name) WHERE status = 'active';
CREATE TABLE IF NOT EXISTS prompt_events (
    id        {serial},
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
    prompt_versions TEXT NOT NULL DEFAULT '{{}}',
    agl_rollout_id  TEXT
);
CREATE INDEX IF NOT EXISTS rollouts_finished ON rollouts (finished);
CREATE TABLE IF NOT EXISTS spans (
    rollout_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    start       REAL NOT NULL,
    "end"       REAL NOT NULL,
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
SQLITE_SCHEMA = _SCHEMA.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", rowid="")
POSTGRES_SCHEMA = _SCHEMA.format(
    serial="BIGSERIAL PRIMARY KEY", rowid="\n    rowid     BIGSERIAL NOT NULL,"
).replace("REAL", "DOUBLE PRECISION")
"""Postgres: 8-byte floats (timestamps), and a `rowid` column (SQLite's implicit one) for the
registry's insertion order."""


class LearningDB:
    """A connection to the learning store (created with its schema on first use).

    `target`: a SQLite path (or ":memory:") or an open `Database`."""

    def __init__(self, target: Path | str | Database) -> None:
        self.db = target if isinstance(target, Database) else SqliteDatabase(target, SQLITE_SCHEMA)
        self.path = Path(self.db.where)

    @classmethod
    def in_data_dir(cls, data_dir: Path, database_url: str | None = None) -> LearningDB:
        """The learning store of a mesh: in Postgres at `database_url` when given, else the file
        in ``data_dir``."""
        return cls(
            open_database(
                database_url,
                Path(data_dir) / DB_FILENAME,
                sqlite_schema=SQLITE_SCHEMA,
                postgres_schema=POSTGRES_SCHEMA,
                name="aimesh.learning",
                serialize_writes=True,
            )
        )

    @classmethod
    def for_settings(cls, settings: Settings, data_dir: Path | None = None) -> LearningDB:
        """The learning store the settings name (`data_dir` overrides theirs)."""
        return cls.in_data_dir(data_dir or settings.data_dir, settings.database_dsn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction; commits on success, rolls back on error."""
        with self.db.transaction() as conn:
            yield conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Rows of a read query."""
        return self.db.query(sql, params)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LearningDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_db(target: LearningDB | Path | str) -> LearningDB:
    """A `LearningDB` for a path (or the given one)."""
    return target if isinstance(target, LearningDB) else LearningDB(target)
