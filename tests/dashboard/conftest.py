"""Builders for realistic mesh traffic: a finished task's MeshState, its telemetry and its report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from graph.state import Attempt, MeshState, Report, Review, ReviewScores, Task
from graph.wire import ReportMessage, TelemetryEvent
from sandbox.base import ExecutionResult

AGENTS = ("producer", "consumer", "sandbox", "reviewer", "supervisor")
NEXT = {
    "producer": "consumer",
    "consumer": "sandbox",
    "sandbox": "reviewer",
    "reviewer": "supervisor",
    "supervisor": "__end__",
}


@dataclass
class MeshRun:
    """One finished task as the mesh would publish it."""

    state: MeshState
    events: list[TelemetryEvent]
    report: ReportMessage


def _run(
    task_id: str,
    *,
    passed: bool,
    reward: float,
    verdict: str = "ok",
    findings: tuple[str, ...] = (),
    latency_ms: dict[str, float] | None = None,
    tokens: dict[str, int] | None = None,
    memory_hits: dict[str, int] | None = None,
    prompt_versions: dict[str, str] | None = None,
    at: datetime | None = None,
    wall_time_s: float = 4.2,
) -> MeshRun:
    latency_ms = latency_ms or {}
    tokens = tokens or {}
    memory_hits = memory_hits or {}
    prompt_versions = prompt_versions or {"producer": "producer@v1", "consumer": "consumer@v1"}
    at = at or datetime.now(UTC)
    execution = ExecutionResult(
        passed=passed,
        tests_passed=3 if passed else 1,
        tests_total=3,
        error_type=None if passed else "AssertionError",
        stderr="" if passed else "assert add(2, 2) == 4",
        backend="local",
    )
    total_tokens = sum(tokens.values())
    outcome = "solved" if passed else "not solved"
    state = MeshState(
        run_id=f"run-{task_id}",
        task=Task(
            task_id=task_id,
            statement="Add two numbers.",
            signature="def add(a: int, b: int) -> int",
            entry_point="add",
            tests=["assert add(1, 2) == 3"],
        ),
        attempts=[
            Attempt(
                number=1,
                code="def add(a, b):\n    return a + b\n",
                execution=execution,
                tokens=total_tokens,
            )
        ],
        review=Review(
            reward=reward, scores=ReviewScores(correctness=1.0 if passed else 0.0), critique="fine"
        ),
        report=Report(
            verdict=verdict,  # type: ignore[arg-type]
            findings=list(findings),
            summary=f"Task {task_id} {outcome} in 1 attempt(s), reward {reward:.2f}; {total_tokens} tokens, {wall_time_s:.1f}s.",
            wall_time_s=wall_time_s,
            tokens_used=total_tokens,
        ),
        prompt_versions=prompt_versions,
        tokens_used=total_tokens,
        status="done",
    )
    events = [
        TelemetryEvent(
            agent=agent,
            timestamp=at,
            latency_ms=latency_ms.get(agent, 10.0),
            tokens_used=tokens.get(agent, 0),
            reward_score=reward if agent in ("reviewer", "supervisor") else None,
            memory_hits=memory_hits.get(agent, 0),
            task_id=task_id,
            run_id=state.run_id,
            attempt=1,
            status="done" if agent == "supervisor" else "solving",
            prompt_version=prompt_versions.get(agent),
            adapter_version=prompt_versions.get(f"{agent}.adapter"),
            next_node=NEXT[agent],
        )
        for agent in AGENTS
    ]
    report = ReportMessage.from_state(state, source="supervisor")
    report.produced_at = at
    return MeshRun(state=state, events=events, report=report)


@pytest.fixture
def mesh_run() -> Callable[..., MeshRun]:
    """`mesh_run(task_id, passed=..., reward=..., ...)` -> MeshRun."""
    return _run
