"""The SQL connection under the mesh's shared state: SQLite (one file, one host, the embedded
default) or Postgres (`Settings.database_url`: one server every host reaches).

The stores (the delivery ledger, the learning store) write their SQL once, in the subset both
engines speak (`?` placeholders, `INSERT ... ON CONFLICT`, `RETURNING`), with a schema per
dialect. A `Database` gives them transactions and one-shot queries; rows read as mappings.

A database that does not answer (Postgres down or restarting, SQLite locked past its timeout) is
`DatabaseUnavailable`, an InfrastructureError: `run` retries its unit of work whole, with backoff,
for up to `retry_s`, then raises it (callers keep their input and try again later). A commit
whose answer was lost may have happened: units of work are written to be safe to repeat.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import psycopg
from psycopg.rows import dict_row

from foundation.backoff import Backoff
from foundation.errors import InfrastructureError

log = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgres"]
Row = Mapping[str, Any]
Params = Sequence[Any]
T = TypeVar("T")

DEFAULT_RETRY_S = 60.0
"""How long a unit of work waits for the database to come back before it gives up."""


class DatabaseUnavailable(InfrastructureError):
    """The database did not answer (down, restarting, unreachable, locked too long)."""


class Cursor(Protocol):
    """What `Connection.execute` returns (sqlite3's and psycopg's cursors both are)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A transaction's connection: `?` placeholders, rows as mappings."""

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> Any: ...


class Database(ABC):
    """One connection, shared by a process's threads under a lock; see the module."""

    dialect: Dialect

    def __init__(self, where: str, retry_s: float) -> None:
        self.where = where
        self.retry_s = retry_s
        self._lock = threading.RLock()
        self._local = threading.local()
        self._last_warning = -1e9

    # ------------------------------------------------------------------ the engine's part

    @abstractmethod
    def _autocommit(self) -> Connection:
        """The connection outside a transaction (connecting first if needed): each statement
        commits by itself."""

    @abstractmethod
    def _begin(self) -> Connection:
        """Start a transaction (connecting first if needed); its connection."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None:
        """Roll back after a failure (and drop a connection that broke)."""

    @abstractmethod
    def _is_outage(self, exc: BaseException) -> bool:
        """Whether `exc` says the database did not answer (not that the SQL was wrong)."""

    @abstractmethod
    def close(self) -> None: ...

    # ------------------------------------------------------------------ shared

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside a `transaction` block."""
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The block's statements as one transaction, committed at its end (none of them if it
        raises). Other threads wait; a nested block is part of the outer one."""
        with self._lock:
            outer = getattr(self._local, "conn", None)
            if outer is not None:
                yield outer
                return
            try:
                conn = self._begin()
            except Exception as exc:
                raise self._translated(exc) from None
            self._local.conn = conn
            try:
                yield conn
                self._commit()
            except BaseException as exc:
                self._abort()
                raise self._translated(exc) from None
            finally:
                self._local.conn = None

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction, repeated whole (with backoff) while the database is
        unavailable, for up to `retry_s`; inside an outer transaction, at once and only once."""

        def once() -> T:
            with self.transaction() as conn:
                return work(conn)

        return once() if self.in_transaction else retry_unavailable(once, self.retry_s, self._warn)

    def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement (its rows, if it returns any): part of this thread's transaction if one
        is open, else atomic by itself, without a transaction's extra round trips; retried like
        `run`."""
        return self._statement(lambda conn: _rows(sql, conn.execute(sql, params)))

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """One statement for each of `rows` (each atomic by itself outside a transaction)."""
        listed = list(rows)
        self._statement(lambda conn: conn.executemany(sql, listed))

    query = execute

    def _statement(self, work: Callable[[Connection], T]) -> T:
        if self.in_transaction:
            return work(self._local.conn)

        def once() -> T:
            with self._lock:
                try:
                    return work(self._autocommit())
                except Exception as exc:
                    self._abort()
                    raise self._translated(exc) from None

        return retry_unavailable(once, self.retry_s, self._warn)

    def _translated(self, exc: BaseException) -> BaseException:
        if self._is_outage(exc):
            detail = " ".join(str(exc).split()) or type(exc).__name__
            return DatabaseUnavailable(f"the database at {self.where} did not answer: {detail}")
        return exc

    def _warn(self, message: str) -> None:
        """One line per outage (every 30 s at most), not one per retry."""
        now = time.monotonic()
        if now - self._last_warning >= 30.0:
            self._last_warning = now
            log.warning(message)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows(sql: str, cursor: Cursor) -> list[Row]:
    """The rows of a statement that returns rows (a query, or a write with RETURNING); none for
    one that does not (told by the SQL: in a pipeline, nothing else knows before its answer)."""
    text = sql.lstrip().upper()
    returns = text.startswith(("SELECT", "WITH")) or " RETURNING " in text
    return list(cursor.fetchall()) if returns else []


def retry_unavailable(work: Callable[[], T], retry_s: float, warn: Callable[[str], None]) -> T:
    """`work()`, repeated with backoff while it raises DatabaseUnavailable, for up to `retry_s`
    (then that error); `warn` hears of each retry."""
    backoff = Backoff(first=0.1, cap=5.0)
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return work()
        except DatabaseUnavailable as exc:
            wait = backoff.next()
            if time.monotonic() + wait > deadline:
                raise
            warn(f"{exc}; retrying in {wait:.1f} s")
            time.sleep(wait)


class SqliteDatabase(Database):
    """A SQLite file in WAL mode (or ":memory:"); writers take its lock (`BEGIN IMMEDIATE`)."""

    dialect: Dialect = "sqlite"

    def __init__(
        self, path: str | Path, schema: str, *, busy_timeout_s: float = 30.0, retry_s: float = 0.0
    ) -> None:
        self.path = str(path)
        super().__init__(self.path, retry_s)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._write_ahead_log(busy_timeout_s)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(schema)

    def _write_ahead_log(self, busy_timeout_s: float) -> None:
        """Switch the file to WAL. The switch takes an exclusive lock that SQLite's busy handler
        does not wait for, so processes opening a new file together (two workers of a group)
        saw "database is locked": retry it for up to `busy_timeout_s`."""
        deadline, backoff = time.monotonic() + busy_timeout_s, Backoff(first=0.01, cap=0.5)
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(backoff.next())

    def _autocommit(self) -> Connection:
        return self._conn

    def _begin(self) -> Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _abort(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _is_outage(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and any(
            sign in text for sign in ("locked", "busy", "disk i/o", "unable to open")
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDatabase(Database):
    """A Postgres database at `url`, reconnected after an outage.

    `schema` is created once (under an advisory lock: hosts starting together do not collide).
    `serialize_writes`: every transaction of this store takes one advisory lock, so writers of
    the whole mesh run one at a time, as SQLite's writers do on one host (for a store whose
    transactions read, then write what they read)."""

    dialect: Dialect = "postgres"

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        name: str,
        serialize_writes: bool = False,
        connect_timeout_s: float = 5.0,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> None:
        super().__init__(_safe_url(url), retry_s)
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._lock_key = zlib.crc32(name.encode())
        self._serialize = serialize_writes
        self._conn: psycopg.Connection[Any] | None = None
        self._pipeline = contextlib.ExitStack()
        with self.transaction() as conn:  # once, at once: a bad address fails here
            conn.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key,))
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, round(self.connect_timeout_s)),
            )
        return self._conn

    def _autocommit(self) -> Connection:
        return _PgConnection(self._connection())

    def _begin(self) -> Connection:
        raw = self._connection()
        # pipeline mode: statements whose rows nobody reads go out without waiting for their
        # answer (a transaction of N writes is about one round trip, not N + 2)
        self._pipeline.enter_context(raw.pipeline())
        conn = _PgConnection(raw)
        conn.execute("BEGIN")
        if self._serialize:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key,))
        return conn

    def _commit(self) -> None:
        self._connection().execute("COMMIT")
        self._pipeline.close()  # waits for every answer: raises the first statement's failure

    def _abort(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._pipeline.close()
        conn = self._conn
        if conn is None or conn.closed:
            return
        if conn.broken:
            conn.close()
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()

    def _is_outage(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


class _PgConnection:
    """A psycopg connection that takes `?` placeholders (the stores' SQL is written once)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        if not params:  # no placeholders: psycopg sends the text as it is
            return self._conn.execute(sql)
        return self._conn.execute(_pg_sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), list(rows))


@lru_cache(maxsize=256)
def _pg_sql(sql: str) -> Any:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _safe_url(url: str) -> str:
    """`url` without its password (for messages)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured database"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"postgres {host}:{port}/{parts.get('dbname', '')}"


def open_database(
    url: str | None,
    sqlite_path: str | Path,
    *,
    sqlite_schema: str,
    postgres_schema: str,
    name: str,
    serialize_writes: bool = False,
) -> Database:
    """The store `name`: on Postgres at `url` when given, else in the SQLite file."""
    if url:
        return PostgresDatabase(url, postgres_schema, name=name, serialize_writes=serialize_writes)
    return SqliteDatabase(sqlite_path, sqlite_schema)


def validate_url(url: str) -> str:
    """`url` if it is a Postgres connection string psycopg can parse, else ValueError."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a Postgres connection string: {exc}") from None
    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("a Postgres URL starts with postgresql:// or postgres://")
    return url
