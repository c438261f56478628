"""A server logs at INFO: memory adds no line per vector insert and no progress bar per
embedding (real mem0, the real embedder)."""

from __future__ import annotations

import logging

import pytest
from memtest import BINARY_SEARCH, BINARY_SEARCH_LIKE

from memory import AgentMemory


def test_memory_is_quiet_at_info_level(
    memory: AgentMemory, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    memory.record_task("t-quiet", "search", 3, BINARY_SEARCH)
    assert memory.search(BINARY_SEARCH_LIKE, k=1)
    chatty = [r for r in caplog.records if r.name.startswith(("mem0", "sentence_transformers"))]
    assert chatty == [], [r.getMessage() for r in chatty]
    err = capfd.readouterr().err
    assert "Batches" not in err and "it/s" not in err
