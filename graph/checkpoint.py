"""The checkpointers: SQLite (durable) or in memory (one process), both with a serializer that
knows (only) the mesh's own state types, so restoring a checkpoint neither warns nor guesses."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

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
