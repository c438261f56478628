"""Supervisor: audits a finished task (budget, attempts, risky code, anomalies) and reports."""

from __future__ import annotations

import time
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig

from graph.state import MeshState, Report
from nodes.code_quality import risky_operations
from nodes.services import get_services


def audit(state: MeshState, time_budget_s: float, token_budget: int) -> Report:
    """The audit of one task's run."""
    wall = time.time() - state.started_at if state.started_at else 0.0
    flags: list[str] = []
    warnings: list[str] = []
    if state.error:
        warnings.append(f"error: {state.error}")
    if wall > time_budget_s:
        warnings.append(f"over time budget: {wall:.1f}s > {time_budget_s:.0f}s")
    if state.tokens_used > token_budget:
        warnings.append(f"over token budget: {state.tokens_used} > {token_budget}")
    last = state.last_attempt
    if last is not None:
        flags += [f"suspicious code: {op}" for op in risky_operations(last.code)]
        if last.execution and last.execution.timed_out:
            warnings.append("the final attempt timed out")
    if state.task is not None and not state.passed:
        warnings.append(f"unsolved after {len(state.attempts)} attempt(s)")
    if state.review is not None and state.passed and state.review.reward < 0.5:
        warnings.append(f"anomaly: passing code with low reward {state.review.reward:.2f}")
    verdict: Literal["ok", "warn", "flag"] = "flag" if flags else "warn" if warnings else "ok"
    outcome = "solved" if state.passed else "not solved"
    reward = f", reward {state.review.reward:.2f}" if state.review else ""
    summary = (
        f"Task {state.task.task_id if state.task else '-'} {outcome} in "
        f"{len(state.attempts)} attempt(s){reward}; {state.tokens_used} tokens, {wall:.1f}s."
    )
    return Report(
        verdict=verdict,
        findings=flags + warnings,
        summary=summary,
        wall_time_s=round(wall, 3),
        tokens_used=state.tokens_used,
    )


def supervise(state: MeshState, config: RunnableConfig) -> dict[str, Any]:
    """Write the report and close the task."""
    settings = get_services(config).settings
    report = audit(state, settings.task_time_budget_s, settings.task_token_budget)
    return {"report": report, "status": "failed" if state.status == "failed" else "done"}
