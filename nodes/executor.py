"""Sandbox node: runs the latest attempt against the task's tests and attaches the result."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.state import MeshState
from nodes.services import get_services
from sandbox import SandboxJob


def execute(state: MeshState, config: RunnableConfig) -> dict[str, Any]:
    """Run the last attempt in the sandbox; the result replaces that attempt in the state."""
    services = get_services(config)
    attempt, task = state.last_attempt, state.task
    if attempt is None or task is None:
        raise ValueError("sandbox node needs a task and an attempt")
    result = services.sandbox.run(
        SandboxJob(
            code=attempt.code,
            tests=task.tests,
            setup=task.setup,
            entry_point=task.entry_point,
            timeout_s=services.settings.sandbox_timeout_s,
            memory_mb=services.settings.sandbox_memory_mb,
        )
    )
    return {"attempts": [attempt.model_copy(update={"execution": result})], "status": "tested"}
