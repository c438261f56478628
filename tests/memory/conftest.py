"""Fixtures for the memory tests: real mem0, the real embedder, stores in temp dirs.

One AgentMemory (embedded Qdrant) is opened per session, so the embedder loads once; each test
gets its own namespace on it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.settings import Settings
from memory import AgentMemory, MemorySettings

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # for `import memtest`


@pytest.fixture(scope="session")
def session_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentMemory]:
    """One real AgentMemory (embedded Qdrant, real embedder) for the whole session."""
    data_dir = tmp_path_factory.mktemp("memory-session")
    memory = AgentMemory.from_settings(
        Settings(data_dir=data_dir, memory=MemorySettings(backend="qdrant"))
    )
    yield memory
    memory.close()


@pytest.fixture
def memory(session_memory: AgentMemory) -> AgentMemory:
    """A fresh, empty namespace on the session's store."""
    return session_memory.namespaced(f"test-{uuid.uuid4().hex[:10]}")
