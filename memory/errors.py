"""The memory's exceptions."""

from __future__ import annotations

from foundation.errors import InfrastructureError


class AgentMemoryError(InfrastructureError):
    """Agent memory cannot be opened or used (an infrastructure failure: a worker keeps the
    message and retries, the CLI prints one line)."""


class MemoryUnavailableError(AgentMemoryError):
    """mem0 or the embedder is not installed (`pip install -e '.[memory]'`)."""


class MemoryConfigError(AgentMemoryError):
    """The memory settings are inconsistent (e.g. infer=True without an LLM endpoint)."""


class MemoryStoreBusyError(AgentMemoryError):
    """The embedded Qdrant store is open in another process (use the chroma backend)."""
