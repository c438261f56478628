"""What the dashboard reads: telemetry events and supervisor reports, parsed leniently.

Telemetry (`ai_telemetry`) follows the DESIGN schema: six required fields (agent, timestamp,
latency_ms, tokens_used, reward_score, memory_hits) and optional extras. The mesh's own
`graph.wire.TelemetryEvent` always satisfies it; events from other producers that
carry only the six required fields are accepted too.

Reports (`ai_reports`) are the mesh's `graph.wire.ReportMessage` (the full MeshState
plus a summary, from which the task's detail is taken); a flat report ({task_id, verdict,
findings, summary, wall_time_s, tokens_used, ...}) is accepted as well. The same topic carries
the supervisor's audit of a whole batch (`graph.wire.BatchAuditMessage`): a batch, not a task.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.state import MeshState
from graph.wire import BatchAuditMessage, ReportMessage

Outcome = Literal["passed", "failed"]
CODE_LIMIT = 20_000
"""Characters of an attempt's code kept for the task detail view."""
TEXT_LIMIT = 4_000
"""Characters of a critique or a verdict's feedback kept for the task detail view."""


class RecordError(ValueError):
    """A record the dashboard cannot use: `reason` is short and stable, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def epoch(value: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class TelemetryRecord(BaseModel):
    """One node step, as the dashboard needs it (the DESIGN telemetry schema)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    agent: str = Field(min_length=1, max_length=200)
    timestamp: datetime
    latency_ms: float = Field(ge=0)
    tokens_used: int = Field(ge=0)
    reward_score: float | None
    memory_hits: int = Field(ge=0)
    task_id: str | None = None
    run_id: str | None = None
    attempt: int | None = None
    status: str | None = None
    prompt_version: str | None = None
    adapter_version: str | None = None
    next_node: str | None = None
    passed: bool | None = None

    @property
    def finishes_task(self) -> bool:
        """The supervisor's step closes a task (it routes to the graph's end)."""
        return self.next_node == "__end__" or (
            self.next_node is None and self.agent == "supervisor"
        )

    @property
    def outcome(self) -> Outcome | None:
        if self.passed is not None:
            return "passed" if self.passed else "failed"
        return "failed" if self.status == "failed" else None


class ReportRecord(BaseModel):
    """A supervisor report, flattened for display."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    task_id: str = Field(min_length=1)
    run_id: str | None = None
    verdict: Literal["ok", "warn", "flag"] | None = None
    summary: str = ""
    findings: list[str] = Field(default_factory=list)
    wall_time_s: float | None = None
    tokens_used: int | None = None
    reward: float | None = None
    attempts: int | None = None
    status: str | None = None
    passed: bool | None = None
    reason: str | None = Field(None, description="why the task failed, when it did")
    failed_at: str | None = Field(None, description="the node whose result failed the task")
    timestamp: datetime | None = None
    detail: dict[str, Any] | None = Field(
        None, description="the task, its attempts, the review and the report (see task_detail)"
    )

    @property
    def outcome(self) -> Outcome | None:
        if self.passed is not None:
            return "passed" if self.passed else "failed"
        return "failed" if self.status == "failed" else None


def _load(value: bytes | str | None) -> dict[str, Any]:
    if value is None or len(value) == 0:
        raise RecordError("empty_value", "the message has no value")
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError as exc:
        raise RecordError(
            "not_utf8", f"the value is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            "malformed_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise RecordError("schema_invalid", f"expected a JSON object, got {type(data).__name__}")
    return data


def _invalid(model: type[BaseModel], exc: ValidationError) -> RecordError:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return RecordError(
        "schema_invalid", f"not a valid {model.__name__}: " + "; ".join(parts) + more
    )


def parse_telemetry(value: bytes | str | None) -> TelemetryRecord:
    """Parse one `ai_telemetry` value; RecordError if it is unusable."""
    data = _load(value)
    try:
        return TelemetryRecord.model_validate(data)
    except ValidationError as exc:
        raise _invalid(TelemetryRecord, exc) from None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_detail(state: MeshState) -> dict[str, Any]:
    """A finished task as the detail view shows it: the task, each attempt's code and verdict
    (what a retry was told: hidden tests only as counts), the review's critique and reward
    components, and the supervisor's report."""
    task, review, report = state.task, state.review, state.report
    return {
        "run_id": state.run_id,
        "status": state.status,
        "error": state.error,
        "tokens_used": state.tokens_used,
        "prompt_versions": dict(state.prompt_versions),
        "task": None
        if task is None
        else {
            "task_id": task.task_id,
            "statement": _clip(task.statement, TEXT_LIMIT),
            "signature": task.signature,
            "entry_point": task.entry_point,
            "category": task.category,
            "difficulty": task.difficulty,
            "public_tests": len(task.tests),
            "hidden_tests": len(task.hidden_tests),
        },
        "attempts": [
            {
                "number": attempt.number,
                "code": _clip(attempt.code, CODE_LIMIT),
                "passed": attempt.execution.passed if attempt.execution else None,
                "tests_passed": attempt.execution.tests_passed if attempt.execution else None,
                "tests_total": attempt.execution.tests_total if attempt.execution else None,
                "test_counts": attempt.test_counts(),
                "error_type": attempt.execution.error_type if attempt.execution else None,
                "timed_out": attempt.execution.timed_out if attempt.execution else False,
                "feedback": _clip(attempt.feedback(), TEXT_LIMIT),
                "tokens": attempt.tokens,
            }
            for attempt in state.attempts
        ],
        "review": None
        if review is None
        else {
            "reward": review.reward,
            "scores": review.scores.model_dump(),
            "critique": _clip(review.critique, TEXT_LIMIT),
            "findings": list(review.findings),
        },
        "report": None if report is None else report.model_dump(),
    }


def _failure(state: MeshState) -> tuple[str, str] | None:
    """(the node whose result failed the task, why), or None when it passed."""
    if state.status == "failed" or state.task is None:  # only the producer fails a run
        return "producer", state.error or "the producer could not make a task"
    if state.passed:
        return None
    submitted = state.submitted
    execution = submitted.execution if submitted else None
    if execution is not None:  # the tests' verdict failed the submitted code
        return "sandbox", execution.feedback(limit=400) or "the tests failed"
    return "consumer", state.error or f"no code to test after {len(state.attempts)} attempt(s)"


def _from_report_message(message: ReportMessage) -> ReportRecord:
    state = message.state
    report = state.report
    failure = _failure(state)
    failed_at, reason = failure if failure else (None, None)
    passed = failure is None
    return ReportRecord(
        task_id=message.task_id,
        run_id=message.run_id,
        verdict=report.verdict if report else None,
        summary=report.summary if report else (message.summary or ""),
        findings=list(report.findings) if report else [],
        wall_time_s=report.wall_time_s if report else None,
        tokens_used=state.tokens_used,
        reward=state.review.reward if state.review else message.reward,
        attempts=len(state.attempts),
        status=state.status,
        passed=passed,
        reason=reason,
        failed_at=failed_at,
        timestamp=message.produced_at,
        detail=task_detail(state),
    )


def parse_report(value: bytes | str | None) -> ReportRecord | BatchAuditMessage:
    """Parse one `ai_reports` value: a mesh ReportMessage or a flat report (a task's), or a
    BatchAuditMessage (a batch's); RecordError if unusable."""
    data = _load(value)
    if isinstance(data.get("audit"), dict):
        try:
            return BatchAuditMessage.model_validate(data)
        except ValidationError as exc:
            raise _invalid(BatchAuditMessage, exc) from None
    if isinstance(data.get("state"), dict):
        try:
            message = ReportMessage.model_validate(data)
        except ValidationError as exc:
            raise _invalid(ReportMessage, exc) from None
        return _from_report_message(message)
    flat = dict(data)
    nested = flat.get("report")
    if isinstance(nested, dict):  # {"task_id": ..., "report": {verdict, findings, ...}}
        flat = {**nested, **{k: v for k, v in flat.items() if k != "report"}}
    if "timestamp" not in flat and "produced_at" in flat:
        flat["timestamp"] = flat["produced_at"]
    if "reward" not in flat and "reward_score" in flat:
        flat["reward"] = flat["reward_score"]
    try:
        record = ReportRecord.model_validate(flat)
    except ValidationError as exc:
        raise _invalid(ReportRecord, exc) from None
    if record.outcome == "failed" and not record.reason:
        record.reason = record.findings[0] if record.findings else (record.summary or None)
    return record
