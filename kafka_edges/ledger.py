"""DeliveryLedger: a durable record, shared by the workers of a host, of the inputs already handled
(so a redelivered message repeats no side effect, even after a restart) and of the last record
published for each stream still in flight (so a memory-only broker's loss can be re-published).

One SQLite file in WAL mode (`Settings.delivery_ledger_db`); every worker process and member on
the host opens the same file. Workers on several hosts need a database they all reach (the same
schema on a shared server) or, on a real cluster, a compacted topic keyed the same way; a
per-host file only dedupes what that host handled.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from kafka_edges.codec import WireRecord

LedgerKey = Sequence[str | int]

_IN_FLIGHT = "stream, topic, key, value, headers, at"
"""The in_flight columns `_in_flight` builds an InFlight from, in its argument order."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS in_flight (
    stream TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB,
    headers TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    progress INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    stream TEXT PRIMARY KEY,
    until REAL NOT NULL
);
"""


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
    """Processed inputs and in-flight streams in one SQLite file (thread- and process-safe).

    >>> ledger = DeliveryLedger(":memory:")
    >>> ledger.seen("consumer", ("run-1", "task-1", 0))
    False
    >>> ledger.mark("consumer", ("run-1", "task-1", 0))
    >>> ledger.seen("consumer", ("run-1", "task-1", 0))
    True
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside happen as one transaction (one WAL commit instead of one each);
        none of them if the block raises. Other threads wait until it ends."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ processed inputs

    def seen(self, scope: str, key: LedgerKey) -> bool:
        """Whether `key` was marked processed in `scope` (e.g. a worker role)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM processed WHERE scope = ? AND key = ?", (scope, _key_text(key))
            ).fetchone()
        return row is not None

    def mark(self, scope: str, key: LedgerKey) -> None:
        """Record `key` as processed in `scope` (idempotent)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO processed (scope, key, at) VALUES (?, ?, ?)",
                (scope, _key_text(key), time.time()),
            )

    def processed_count(self, scope: str | None = None) -> int:
        with self._lock:
            if scope is None:
                row = self._db.execute("SELECT COUNT(*) FROM processed").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM processed WHERE scope = ?", (scope,)
                ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ in-flight streams

    def record_in_flight(
        self, stream: str, topic: str, record: WireRecord, *, done: bool = False, progress: int = 0
    ) -> None:
        """`record` (published to broker topic `topic`) is now the last word of `stream`, unless
        the stream already went further (`progress`: how far along the stream this record is;
        workers confirm out of order, and an older record must not replace a newer one);
        `done`: the stream has finished (nothing to re-publish for it)."""
        headers = json.dumps(
            [
                [name, base64.b64encode(value or b"").decode("ascii")]
                for name, value in _bytes_headers(record.headers)
            ]
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO in_flight (stream, topic, key, value, headers, done, progress, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(stream) DO UPDATE SET "
                "topic = excluded.topic, key = excluded.key, value = excluded.value, "
                "headers = excluded.headers, done = excluded.done, progress = excluded.progress, "
                "at = excluded.at WHERE excluded.progress >= in_flight.progress",
                (
                    stream,
                    topic,
                    record.key,
                    record.value,
                    headers,
                    int(done),
                    progress,
                    time.time(),
                ),
            )

    def finish(self, stream: str) -> None:
        """Mark `stream` finished (e.g. it was dead-lettered)."""
        with self._lock:
            self._db.execute("UPDATE in_flight SET done = 1 WHERE stream = ?", (stream,))

    def in_flight(self) -> list[InFlight]:
        """The streams not finished, oldest first, with their last published record."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_IN_FLIGHT} FROM in_flight WHERE done = 0 ORDER BY at"
            ).fetchall()
        return [_in_flight(*row) for row in rows]

    def finished(self, streams: Iterable[str]) -> list[InFlight]:
        """Of `streams`, those finished, with their last record (e.g. a run's final report)."""
        wanted = list(streams)
        found: list[InFlight] = []
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found += [
                    _in_flight(*row)
                    for row in self._db.execute(
                        f"SELECT {_IN_FLIGHT} FROM in_flight "
                        f"WHERE done = 1 AND stream IN ({marks})",
                        chunk,
                    )
                ]
        return found

    def take_stale(self, not_after: float) -> list[InFlight]:
        """Claim the unfinished streams that have not moved since `not_after` (a `time.time()`)
        and that no worker holds a lease on, for re-publishing: their time is set to now in the
        same statement, so of several processes sweeping the file each stale stream goes to
        one, once per period."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "UPDATE in_flight SET at = ? WHERE done = 0 AND at <= ? "
                "AND stream NOT IN (SELECT stream FROM leases WHERE until > ?) "
                f"RETURNING {_IN_FLIGHT}",
                (now, not_after, now),
            ).fetchall()
        return sorted((_in_flight(*row) for row in rows), key=lambda f: f.stream)

    def leases(self, *, renew_every_s: float = 10.0) -> Leases:
        """Leases a worker takes on streams as their work starts and releases together when the
        block ends (e.g. a batch's steps and the publishing of their outputs): `take_stale`
        leaves a leased stream alone."""
        return Leases(self, renew_every_s)

    def _lease(self, streams: Sequence[str], until: float) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO leases (stream, until) VALUES (?, ?)",
                [(stream, until) for stream in streams],
            )

    def _release(self, streams: Sequence[str]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM leases WHERE stream = ?", [(stream,) for stream in streams]
            )

    def prune(self, max_age_s: float) -> int:
        """Forget processed keys and finished streams older than `max_age_s`; return how many.

        A redelivery older than that would be handled again: keep it well above how long a
        record can wait on the broker (its retention) and how long a run can take.
        """
        cutoff = time.time() - max_age_s
        with self._lock:
            done = self._db.execute("DELETE FROM processed WHERE at < ?", (cutoff,)).rowcount
            done += self._db.execute(
                "DELETE FROM in_flight WHERE done = 1 AND at < ?", (cutoff,)
            ).rowcount
        return int(done)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
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


def _in_flight(
    stream: str, topic: str, key: bytes | None, value: bytes | None, headers: str, at: float
) -> InFlight:
    return InFlight(
        stream=stream,
        topic=topic,
        record=WireRecord(
            key=bytes(key or b""),
            value=bytes(value or b""),
            headers=[(name, base64.b64decode(v)) for name, v in json.loads(headers)],
        ),
        at=float(at),
    )


def _bytes_headers(
    headers: Iterable[tuple[str, str | bytes | None]],
) -> list[tuple[str, bytes | None]]:
    return [(n, v.encode("utf-8") if isinstance(v, str) else v) for n, v in headers]


class Leases:
    """Leases held by one worker until the block ends. One keeper thread (started with the first
    lease) renews them all every `renew_every_s`; a lease lapses three renewals after a holder
    that died without releasing it."""

    def __init__(self, ledger: DeliveryLedger, renew_every_s: float) -> None:
        self.ledger = ledger
        self.renew_every_s = renew_every_s
        self.streams: list[str] = []
        self._done = threading.Event()
        self._keeper: threading.Thread | None = None

    def hold(self, stream: str) -> None:
        """Lease `stream` until the block ends."""
        self.streams.append(stream)
        self.ledger._lease([stream], self._until())
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._renew, name="aimesh-ledger-lease", daemon=True
            )
            self._keeper.start()

    def _until(self) -> float:
        return time.time() + 3 * self.renew_every_s

    def _renew(self) -> None:
        while not self._done.wait(self.renew_every_s):
            self.ledger._lease(list(self.streams), self._until())

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
        if self.streams:
            self.ledger._release(self.streams)
