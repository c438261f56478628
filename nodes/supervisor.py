"""Supervisor: audits a finished task (budget, attempts, risky code, anomalies) and reports."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import BatchAudit, MeshState, Report, TaskOutcome
from nodes.code_quality import risky_operations


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
    submitted = state.submitted
    if submitted is not None:
        flags += [f"suspicious code: {op}" for op in risky_operations(submitted.code)]
        if submitted.execution and submitted.execution.timed_out:
            warnings.append("the answer submitted timed out")
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


def supervise(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
    """Write the report and close the task."""
    settings = runtime.context.settings
    report = audit(state, settings.task_time_budget_s, settings.task_token_budget)
    return {"report": report, "status": "failed" if state.status == "failed" else "done"}


LOW_PASS_RATE = 0.5
"""A batch solving fewer of its tasks than this is an anomaly."""


def audit_batch(
    batch_id: str,
    outcomes: Sequence[TaskOutcome],
    time_budget_s: float,
    token_budget: int,
    *,
    wall_time_s: float | None = None,
) -> BatchAudit:
    """Audit a finished batch of tasks; its time is `wall_time_s` when the caller measured it
    (tasks run side by side), else the sum of the tasks' times (tasks run one after another)."""
    n = len(outcomes)
    rewards = [o.reward for o in outcomes]
    trend = _slope(rewards)
    anomalies = [
        f"task {o.index + 1} flagged ({o.task_id})" for o in outcomes if o.verdict == "flag"
    ]
    anomalies += [f"task {o.index + 1} failed: {o.error}" for o in outcomes if o.error]
    anomalies += [
        f"task {o.index + 1} over budget ({o.seconds:.0f}s, {o.tokens} tokens)"
        for o in outcomes
        if o.seconds > time_budget_s or o.tokens > token_budget
    ]
    pass_rate = sum(o.passed for o in outcomes) / n if n else 0.0
    if pass_rate < LOW_PASS_RATE:
        anomalies.append(f"pass rate {pass_rate:.0%} is below {LOW_PASS_RATE:.0%}")
    if n >= 4 and trend < -0.05:
        anomalies.append(f"reward falling by {-trend:.2f} per task")
    flagged = any(o.verdict == "flag" for o in outcomes)
    verdict: Literal["ok", "warn", "flag"] = "flag" if flagged else "warn" if anomalies else "ok"
    mean_reward = sum(rewards) / n if n else 0.0
    tokens = sum(o.tokens for o in outcomes)
    seconds = sum(o.seconds for o in outcomes) if wall_time_s is None else wall_time_s
    return BatchAudit(
        batch_id=batch_id,
        tasks=n,
        pass_rate=round(pass_rate, 4),
        mean_reward=round(mean_reward, 4),
        reward_trend=round(trend, 4),
        tokens_used=tokens,
        wall_time_s=round(seconds, 3),
        anomalies=anomalies,
        verdict=verdict,
        summary=(
            f"Batch {batch_id}: {n} task(s), pass rate {pass_rate:.0%}, mean reward "
            f"{mean_reward:.2f} (trend {trend:+.3f}/task), {tokens} tokens, {seconds:.1f}s wall "
            f"time; {len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'}."
        ),
    )


def _slope(values: list[float]) -> float:
    """Least-squares slope of values over their positions (0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    return covariance / sum((x - mean_x) ** 2 for x in range(n))
