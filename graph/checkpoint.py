"""The checkpointers: SQLite (durable, one host), Postgres (durable, shared by hosts:
`Settings.database_url`) or in memory (one process), all with a serializer that knows (only) the
mesh's own state types, so restoring a checkpoint neither warns nor guesses."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from foundation.database import DEFAULT_RETRY_S, DatabaseUnavailable, retry_unavailable
from foundation.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

STATE_TYPES = (
    ("graph.state", "MeshState"),
    ("graph.state", "Task"),
    ("graph.state", "Attempt"),
    ("graph.state", "Review"),
    ("graph.state", "ReviewScores"),
    ("graph.state", "Report"),
    ("sandbox.base", "ExecutionResult"),
    ("sandbox.base", "TestFailure"),
)


def mesh_serializer() -> JsonPlusSerializer:
    """A serializer that restores the mesh's pydantic types and refuses any other class."""
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


@contextlib.contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    """A SQLite checkpointer at `path` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn, serde=mesh_serializer())
    finally:
        conn.close()


def memory_checkpointer() -> InMemorySaver:
    """An in-memory checkpointer (one process, nothing on disk) with the mesh's serializer."""
    return InMemorySaver(serde=mesh_serializer())


class RetryingPostgresSaver(PostgresSaver):
    """PostgresSaver over a connection pool (broken connections are replaced) whose reads and
    writes wait, with backoff, for a server that restarts (`foundation.database`); its writes
    are upserts, safe to repeat."""

    def _retried(self, work: Callable[[], T]) -> T:
        def once() -> T:
            try:
                return work()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise DatabaseUnavailable(
                    f"the checkpoint database did not answer: {exc}"
                ) from None

        return retry_unavailable(once, DEFAULT_RETRY_S, log.warning)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._retried(lambda: PostgresSaver.get_tuple(self, config))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._retried(
            lambda: PostgresSaver.put(self, config, checkpoint, metadata, new_versions)
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._retried(lambda: PostgresSaver.put_writes(self, config, writes, task_id, task_path))


@contextlib.contextmanager
def postgres_checkpointer(url: str) -> Iterator[RetryingPostgresSaver]:
    """A Postgres checkpointer at `url` (its tables created if needed)."""
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,
        timeout=10.0,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=10.0)
        saver = RetryingPostgresSaver(pool, serde=mesh_serializer())  # type: ignore[arg-type]
        saver.setup()
    except (psycopg.Error, PoolTimeout) as exc:
        pool.close()
        raise DatabaseUnavailable(f"the checkpoint database did not answer: {exc}") from None
    try:
        yield saver
    finally:
        pool.close()


@contextlib.contextmanager
def durable_checkpointer(settings: Settings) -> Iterator[BaseCheckpointSaver[Any]]:
    """The `run` command's checkpointer: in the mesh's Postgres (`settings.database_url`) when
    set, else the SQLite file in the data dir."""
    url = settings.database_dsn
    with (
        postgres_checkpointer(url) if url else sqlite_checkpointer(settings.checkpoint_db) as saver
    ):
        yield saver
