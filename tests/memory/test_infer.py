"""The optional LLM-extraction mode (mem0 infer=True) against the embedded local model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from memtest import FIBONACCI, FIBONACCI_CODE, FIBONACCI_LIKE

from foundation.settings import Settings
from llm.engine_build import Engine
from llm.local_model import CATALOGUE, ensure_model
from llm.local_server import LocalModelServer
from memory import AgentMemory, MemorySettings


@pytest.mark.real_llm
@pytest.mark.timeout(300)
def test_infer_falls_back_to_verbatim_when_the_llm_cannot_extract(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mem0's extraction prompt is ~8k tokens: more than a slot's 4096-token context."""
    cache = Settings().cache_dir
    model = ensure_model("0.5b", cache)
    alias = CATALOGUE["0.5b"].alias
    with LocalModelServer(model, cache_dir=cache, alias=alias) as server:
        settings = Settings(
            data_dir=tmp_path / "data", llm_model=alias, memory=MemorySettings(infer=True)
        )
        with AgentMemory.from_settings(settings, llm_base_url=server.base_url) as memory:
            assert memory.infer
            critique = "Iterative loop, O(1) memory, clear names."
            with caplog.at_level(logging.WARNING, logger="memory.agent_memory"):
                first = memory.record_best_practice(FIBONACCI, critique, FIBONACCI_CODE)
            assert "mem0 LLM extraction failed, best_practice stored verbatim" in caplog.text
            assert "exceeds the available context size" in caplog.text
            assert memory.record_best_practice(FIBONACCI, critique, FIBONACCI_CODE) == first
            memory.record_task("t-1", "math", 2, FIBONACCI)  # tasks never go through the LLM
            [practice] = memory.list(kind="best_practice")
            [task] = memory.list(kind="task")
            recalled = memory.recall(FIBONACCI_LIKE)
        assert server.log_path is not None
        assert "processing task" in server.log_path.read_text(errors="replace")  # it was asked
    assert practice.id == first and practice.text.startswith("Best practice for task:")
    assert task.text == f"Task [math, difficulty 2]: {FIBONACCI}"
    assert recalled.best_practices == [practice.text]
