"""DeliveryLedger: a durable record, shared by the workers of a host or of the whole mesh, of the
inputs already handled (so a redelivered message repeats no side effect, even after a restart)
and of the last record published for each stream still in flight (so a memory-only broker's
loss can be re-published).

Embedded default: one SQLite file in WAL mode (`Settings.delivery_ledger_db`) that every worker
process of the host opens; it dedupes what that host handled. With `Settings.database_url` the
same tables live in Postgres, shared by every host: a key marked on one host is seen on all, a
lease blocks every host, and a stale run is claimed by one process of the whole mesh
(`take_stale`: `FOR UPDATE SKIP LOCKED`). Each method is one unit of work, safe to repeat, retried
while the database restarts (`foundation.database`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from foundation.database import (
    Connection,
    Database,
    DatabaseUnavailable,
    Row,
    SqliteDatabase,
    open_database,
)
from foundation.settings import Settings
from kafka_edges.codec import WireRecord

log = logging.getLogger(__name__)

LedgerKey = Sequence[str | int]

_IN_FLIGHT = "stream, topic, key, value, headers, at"
"""The in_flight columns `_in_flight` builds an InFlight from."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    at {real} NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS in_flight (
    stream TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key {blob},
    value {blob},
    headers TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    progress INTEGER NOT NULL DEFAULT 0,
    at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS in_flight_open ON in_flight (at) WHERE done = 0;
CREATE TABLE IF NOT EXISTS leases (
    stream TEXT PRIMARY KEY,
    until {real} NOT NULL
);
"""
SQLITE_SCHEMA = _SCHEMA.format(real="REAL", blob="BLOB")
POSTGRES_SCHEMA = _SCHEMA.format(real="DOUBLE PRECISION", blob="BYTEA")


@dataclass(frozen=True)
class Transition:
    """A record to keep as a stream's last word in flight (`DeliveryLedger.record_in_flight`)."""

    stream: str
    topic: str
    record: WireRecord
    done: bool = False
    progress: int = 0


@dataclass(frozen=True)
class InFlight:
    """The last record published for a stream (e.g. one task's run) that has not finished."""

    stream: str
    topic: str
    record: WireRecord
    at: float


def _key_text(key: LedgerKey) -> str:
    return "\x1f".join(str(part) for part in key)


class DeliveryLedger:
    """Processed inputs and in-flight streams (thread- and process-safe; see the module).

    `target`: a SQLite path (or ":memory:") or an open `Database`.

    >>> ledger = DeliveryLedger(":memory:")
    >>> ledger.seen("consumer", ("run-1", "task-1", 0))
    False
    >>> ledger.mark("consumer", ("run-1", "task-1", 0))
    >>> ledger.seen("consumer", ("run-1", "task-1", 0))
    True
    """

    def __init__(self, target: str | Path | Database, *, busy_timeout_s: float = 30.0) -> None:
        self._db = (
            target
            if isinstance(target, Database)
            else SqliteDatabase(target, SQLITE_SCHEMA, busy_timeout_s=busy_timeout_s)
        )
        self.path = self._db.where

    @classmethod
    def for_settings(cls, settings: Settings) -> DeliveryLedger:
        """The mesh's ledger: in Postgres with `settings.database_url`, else the host's file."""
        return cls(
            open_database(
                settings.database_dsn,
                settings.delivery_ledger_db,
                sqlite_schema=SQLITE_SCHEMA,
                postgres_schema=POSTGRES_SCHEMA,
                name="aimesh.delivery_ledger",
            )
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside happen as one transaction (one commit instead of one each); none of
        them if the block raises. Other threads wait until it ends."""
        with self._db.transaction():
            yield

    # ------------------------------------------------------------------ processed inputs

    def seen(self, scope: str, key: LedgerKey) -> bool:
        """Whether `key` was marked processed in `scope` (e.g. a worker role)."""
        rows = self._db.query(
            "SELECT 1 AS hit FROM processed WHERE scope = ? AND key = ?", (scope, _key_text(key))
        )
        return bool(rows)

    def mark(self, scope: str, *keys: LedgerKey) -> None:
        """Record `keys` as processed in `scope` (idempotent; several at once: one statement
        each, pipelined)."""
        now = time.time()
        self._db.executemany(
            "INSERT INTO processed (scope, key, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(scope, _key_text(key), now) for key in keys],
        )

    def processed_count(self, scope: str | None = None) -> int:
        if scope is None:
            rows = self._db.query("SELECT COUNT(*) AS n FROM processed")
        else:
            rows = self._db.query("SELECT COUNT(*) AS n FROM processed WHERE scope = ?", (scope,))
        return int(rows[0]["n"])

    # ------------------------------------------------------------------ in-flight streams

    def record_in_flight(
        self, stream: str, topic: str, record: WireRecord, *, done: bool = False, progress: int = 0
    ) -> None:
        """`record` (published to broker topic `topic`) is now the last word of `stream`, unless
        the stream already went further (`progress`: how far along the stream this record is;
        workers confirm out of order, and an older record must not replace a newer one);
        `done`: the stream has finished (nothing to re-publish for it)."""
        self.record_all_in_flight([Transition(stream, topic, record, done, progress)])

    def record_all_in_flight(self, transitions: Iterable[Transition]) -> None:
        """`record_in_flight` for each of `transitions` (one statement each, pipelined)."""
        now = time.time()
        self._db.executemany(
            "INSERT INTO in_flight (stream, topic, key, value, headers, done, progress, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE SET "
            "topic = excluded.topic, key = excluded.key, value = excluded.value, "
            "headers = excluded.headers, done = excluded.done, progress = excluded.progress, "
            "at = excluded.at WHERE excluded.progress >= in_flight.progress",
            [
                (t.stream, t.topic, t.record.key, t.record.value, _headers_text(t.record),
                 int(t.done), t.progress, now)
                for t in transitions
            ],
        )  # fmt: skip

    def finish(self, stream: str) -> None:
        """Mark `stream` finished (e.g. it was dead-lettered)."""
        self._db.execute("UPDATE in_flight SET done = 1 WHERE stream = ?", (stream,))

    def in_flight(self) -> list[InFlight]:
        """The streams not finished, oldest first, with their last published record."""
        rows = self._db.query(f"SELECT {_IN_FLIGHT} FROM in_flight WHERE done = 0 ORDER BY at")
        return [_in_flight(row) for row in rows]

    def finished(self, streams: Iterable[str]) -> list[InFlight]:
        """Of `streams`, those finished, with their last record (e.g. a run's final report)."""
        wanted = list(streams)

        def read(conn: Connection) -> list[InFlight]:
            found: list[InFlight] = []
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found += [
                    _in_flight(row)
                    for row in conn.execute(
                        f"SELECT {_IN_FLIGHT} FROM in_flight "
                        f"WHERE done = 1 AND stream IN ({marks})",
                        chunk,
                    )
                ]
            return found

        return self._db.run(read)

    def take_stale(self, not_after: float) -> list[InFlight]:
        """Claim the unfinished streams that have not moved since `not_after` (a `time.time()`)
        and that no worker holds a lease on, for re-publishing: their time is set to now in the
        same statement, so of several processes sweeping the ledger (on one host or, in
        Postgres, on all) each stale stream goes to one, once per period."""
        now = time.time()
        lock = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgres" else ""
        rows = self._db.execute(
            "UPDATE in_flight SET at = ? WHERE stream IN ("
            "SELECT stream FROM in_flight WHERE done = 0 AND at <= ? "
            f"AND stream NOT IN (SELECT stream FROM leases WHERE until > ?){lock}) "
            f"AND done = 0 AND at <= ? RETURNING {_IN_FLIGHT}",
            (now, not_after, now, not_after),
        )
        return sorted((_in_flight(row) for row in rows), key=lambda f: f.stream)

    def leases(self, *, renew_every_s: float = 10.0, write_after_s: float = 1.0) -> Leases:
        """Leases a worker takes on streams as their work starts and releases together when the
        block ends (e.g. a batch's steps and the publishing of their outputs): `take_stale`
        leaves a leased stream alone once the lease is written (`write_after_s`, see `Leases`)."""
        return Leases(self, renew_every_s, write_after_s)

    def _lease(self, streams: Sequence[str], until: float) -> None:
        self._db.executemany(
            "INSERT INTO leases (stream, until) VALUES (?, ?) "
            "ON CONFLICT (stream) DO UPDATE SET until = excluded.until",
            [(stream, until) for stream in streams],
        )

    def _release(self, streams: Sequence[str]) -> None:
        self._db.executemany("DELETE FROM leases WHERE stream = ?", [(s,) for s in streams])

    def prune(self, max_age_s: float) -> int:
        """Forget processed keys and finished streams older than `max_age_s`; return how many.

        A redelivery older than that would be handled again: keep it well above how long a
        record can wait on the broker (its retention) and how long a run can take.
        """
        cutoff = time.time() - max_age_s

        def delete(conn: Connection) -> int:  # rows returned, not rowcount: a pipeline has none
            keys = conn.execute("DELETE FROM processed WHERE at < ? RETURNING 1", (cutoff,))
            streams = conn.execute(
                "DELETE FROM in_flight WHERE done = 1 AND at < ? RETURNING 1", (cutoff,)
            )
            return len(keys.fetchall()) + len(streams.fetchall())

        return self._db.run(delete)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _in_flight(row: Row) -> InFlight:
    return InFlight(
        stream=row["stream"],
        topic=row["topic"],
        record=WireRecord(
            key=bytes(row["key"] or b""),
            value=bytes(row["value"] or b""),
            headers=[(name, base64.b64decode(v)) for name, v in json.loads(row["headers"])],
        ),
        at=float(row["at"]),
    )


def _headers_text(record: WireRecord) -> str:
    return json.dumps(
        [
            [name, base64.b64encode(value or b"").decode("ascii")]
            for name, value in _bytes_headers(record.headers)
        ]
    )


def _bytes_headers(
    headers: Iterable[tuple[str, str | bytes | None]],
) -> list[tuple[str, bytes | None]]:
    return [(n, v.encode("utf-8") if isinstance(v, str) else v) for n, v in headers]


class Leases:
    """Leases held by one worker until the block ends, written by one keeper thread (started
    with the first lease): the new ones `write_after_s` after they are taken, then all of them
    every `renew_every_s`; a lease lapses three renewals after a holder that died without
    releasing it. A block shorter than `write_after_s` (most batches) costs the database
    nothing: a run is swept only after `stale_s` without moving, and a lease that comes a
    second late only leaves a run whose record waited almost that long exposed for that second
    (a copy re-published then is a duplicate, skipped by the next worker)."""

    def __init__(
        self, ledger: DeliveryLedger, renew_every_s: float, write_after_s: float = 1.0
    ) -> None:
        self.ledger = ledger
        self.renew_every_s = renew_every_s
        self.write_after_s = min(write_after_s, renew_every_s)
        self.streams: list[str] = []
        self._written: set[str] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._keeper: threading.Thread | None = None

    def hold(self, stream: str) -> None:
        """Lease `stream` until the block ends."""
        with self._lock:
            self.streams.append(stream)
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._keep, name="aimesh-ledger-lease", daemon=True
            )
            self._keeper.start()

    def _keep(self) -> None:
        renewed = time.monotonic()
        while not self._done.wait(self.write_after_s):
            with self._lock:
                due = time.monotonic() - renewed >= self.renew_every_s
                streams = [s for s in self.streams if due or s not in self._written]
            if not streams:
                continue
            renewed = time.monotonic() if due else renewed
            try:
                self.ledger._lease(streams, time.time() + 3 * self.renew_every_s)
            except DatabaseUnavailable as exc:  # written at the next turn
                log.warning("writing %d lease(s) failed: %s", len(streams), exc)
                continue
            with self._lock:
                self._written.update(streams)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._keeper is not None:
            self._keeper.join()
        if self._written:
            try:
                self.ledger._release(sorted(self._written))
            except DatabaseUnavailable as exc:  # they lapse by themselves
                log.warning("releasing %d lease(s) failed: %s", len(self._written), exc)
