"""What the dashboard reads: telemetry events and supervisor reports, parsed leniently.

Telemetry (`ai_telemetry`) follows the DESIGN schema: six required fields (agent, timestamp,
latency_ms, tokens_used, reward_score, memory_hits) and optional extras. The mesh's own
`graph.wire.TelemetryEvent` always satisfies it; events from other producers that
carry only the six required fields are accepted too.

Reports (`ai_reports`) are the mesh's `graph.wire.ReportMessage` (the full MeshState
plus a summary); a flat report ({task_id, verdict, findings, summary, wall_time_s, tokens_used,
...}) is accepted as well.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.wire import ReportMessage

Outcome = Literal["passed", "failed"]


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
    timestamp: datetime | None = None

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


def _from_report_message(message: ReportMessage) -> ReportRecord:
    state = message.state
    report = state.report
    last = state.last_attempt
    producer_failed = state.status == "failed" or state.task is None
    passed = False if producer_failed else state.passed
    reason: str | None = None
    if producer_failed:
        reason = state.error or "the producer could not make a task"
    elif not passed:
        execution = last.execution if last else None
        feedback = execution.feedback(limit=400) if execution else ""
        reason = feedback or state.error or f"unsolved after {len(state.attempts)} attempt(s)"
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
        timestamp=message.produced_at,
    )


def parse_report(value: bytes | str | None) -> ReportRecord:
    """Parse one `ai_reports` value (a mesh ReportMessage, or a flat report); RecordError if unusable."""
    data = _load(value)
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
