"""An unreachable memory store is an infrastructure failure (workers keep the message)."""

from __future__ import annotations

import httpx
import pytest

from graph.node_worker import is_infrastructure_failure
from memory.agent_memory import _StoreGuard
from memory.errors import MemoryUnavailableError


class _DownStore:
    name = "down"

    def search(self, query: str) -> dict[str, list[object]]:
        raise httpx.ConnectError("connection refused")

    def add(self, text: str) -> dict[str, list[object]]:
        raise ConnectionRefusedError(111, "Connection refused")

    def get_all(self) -> dict[str, list[object]]:
        raise KeyError("a bug, not an outage")


def test_connection_failures_become_memory_unavailable() -> None:
    store = _StoreGuard(_DownStore())
    assert store.name == "down"
    with pytest.raises(MemoryUnavailableError, match=r"unreachable.*ConnectError") as search:
        store.search("q")
    with pytest.raises(MemoryUnavailableError, match="ConnectionRefusedError") as add:
        store.add("t")
    assert is_infrastructure_failure(search.value) and is_infrastructure_failure(add.value)
    with pytest.raises(KeyError):  # anything else stays what it is
        store.get_all()
