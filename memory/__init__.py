"""Persistent agent memory over mem0, fully offline (see `memory.agent_memory`).

Importing this package is cheap: mem0, torch and the embedder load in `AgentMemory.from_settings`.
"""

from foundation.settings import MemorySettings
from memory.agent_memory import KINDS, AgentMemory, MemoryKind, MemoryRecord, Recall
from memory.errors import (
    AgentMemoryError,
    MemoryConfigError,
    MemoryStoreBusyError,
    MemoryUnavailableError,
)

__all__ = [
    "KINDS",
    "AgentMemory",
    "AgentMemoryError",
    "MemoryConfigError",
    "MemoryKind",
    "MemoryRecord",
    "MemorySettings",
    "MemoryStoreBusyError",
    "MemoryUnavailableError",
    "Recall",
]
