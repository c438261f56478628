"""One real task through the real local model (Qwen2.5-Coder-0.5B on llama.cpp), end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services import build_context
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.datasets import humaneval_tasks
from graph.state import MeshState
from nodes import NODE_FUNCTIONS

pytestmark = [pytest.mark.real_llm, pytest.mark.timeout(600)]


def test_a_humaneval_task_is_solved_by_the_real_local_model(tmp_path: Path) -> None:
    settings = Settings(
        llm="local", llm_temperature=0.0, llm_max_tokens=384, data_dir=tmp_path, max_attempts=3
    )
    services = build_context(settings)
    task = humaneval_tasks(limit=3)[2]  # truncate_number: small and unambiguous
    final = MeshState.model_validate(
        compile_mesh(NODE_FUNCTIONS).invoke(MeshState(task=task, max_attempts=3), context=services)
    )
    assert final.tokens_used > 0 and final.attempts
    assert "def truncate_number" in final.attempts[-1].code
    assert final.passed, final.attempts[-1].execution
    assert final.review is not None and final.review.scores.correctness == 1.0
    assert final.report is not None and final.status == "done"
