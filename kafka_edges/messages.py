"""Wire schemas: one pydantic model per topic, JSON values, task-id keys, metadata headers.

Every edge message carries the full MeshState, so any worker of the destination role can
continue the task, plus a small summary for people and dashboards reading the topic.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graph.edges import StepRecord
from graph.state import MeshState
from kafka_edges.topics import (
    AI_DEAD_LETTER,
    AI_REPORTS,
    AI_REQUESTS,
    AI_REVIEWS,
    AI_SOLUTIONS,
    AI_TELEMETRY,
    AI_TOPIC,
    AI_VERIFIED,
    topic_for_transition,
)
from nodes.prompts import system_prompt
from nodes.supervisor import BatchAudit

SCHEMA_VERSION = 1
"""Bumped on a breaking change; workers dead-letter versions they do not understand."""

Headers = list[tuple[str, str | bytes | None]]
RawHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None
M = TypeVar("M", bound="WireModel")

H_SCHEMA_VERSION = "schema_version"
H_MESSAGE_TYPE = "message_type"
H_RUN_ID = "run_id"
H_TASK_ID = "task_id"
H_ATTEMPT = "attempt"
H_SOURCE = "source"
H_ORIGIN = "origin"

Origin = Literal["worker", "in_process", "feed"]
"""Who published a transition: a NodeWorker (the distributed run: workers continue it), the
in-process graph (a record of a run happening elsewhere: workers must NOT continue it), or a feeder."""


def _now() -> datetime:
    return datetime.now(UTC)


def message_key(state: MeshState) -> str:
    """The Kafka key of a state's messages: the task id, or the run id before a task exists."""
    return state.task.task_id if state.task is not None else state.run_id


class WireModel(BaseModel):
    """Base of everything the mesh puts on a topic."""

    model_config = ConfigDict(extra="ignore")

    TOPIC: ClassVar[str]
    TYPE: ClassVar[str]

    schema_version: int = SCHEMA_VERSION

    def wire_key(self) -> str:
        raise NotImplementedError

    def wire_headers(self) -> dict[str, str]:
        return {H_SCHEMA_VERSION: str(self.schema_version), H_MESSAGE_TYPE: self.TYPE}


class EdgeMessage(WireModel):
    """A transition between nodes: identity, the full state, and (in subclasses) a summary."""

    message_type: str
    task_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    attempt: int = Field(ge=0, description="consumer attempts made so far (len(state.attempts))")
    source: str = Field(description="the node that produced the message, or 'feed'")
    origin: Origin = "worker"
    produced_at: datetime = Field(default_factory=_now)
    state: MeshState

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "message_type" not in data and hasattr(cls, "TYPE"):
            data = {**data, "message_type": cls.TYPE}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.message_type != self.TYPE:
            raise ValueError(
                f"message_type {self.message_type!r} does not belong on {self.TOPIC} (expected {self.TYPE!r})"
            )
        if self.run_id != self.state.run_id:
            raise ValueError(
                f"run_id {self.run_id!r} differs from state.run_id {self.state.run_id!r}"
            )
        if self.task_id != message_key(self.state):
            raise ValueError(
                f"task_id {self.task_id!r} differs from the state's task ({message_key(self.state)!r})"
            )
        if self.attempt != len(self.state.attempts):
            raise ValueError(
                f"attempt {self.attempt} differs from the state's {len(self.state.attempts)} attempts"
            )
        return self

    @classmethod
    def from_state(cls, state: MeshState, source: str, origin: Origin | None = None) -> Self:
        """Build the message for `state`, filling the identity and the summary from it."""
        return cls.model_validate(
            {
                "message_type": cls.TYPE,
                "task_id": message_key(state),
                "run_id": state.run_id,
                "attempt": len(state.attempts),
                "source": source,
                "origin": origin or ("feed" if source == "feed" else "worker"),
                "state": state,
                **cls.summarize(state),
            }
        )

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        """The topic-specific summary fields for `state`."""
        return {}

    def wire_key(self) -> str:
        return self.task_id

    def wire_headers(self) -> dict[str, str]:
        return {
            **super().wire_headers(),
            H_RUN_ID: self.run_id,
            H_TASK_ID: self.task_id,
            H_ATTEMPT: str(self.attempt),
            H_SOURCE: self.source,
            H_ORIGIN: self.origin,
        }

    @property
    def idempotency_key(self) -> tuple[str, str, int]:
        """(run id, task id, attempt): one input per role per value; repeats are duplicates."""
        return (self.run_id, self.task_id, self.attempt)


class TaskRequest(EdgeMessage):
    """`ai_requests`: ask the producer for a task (the state carries batch position and budget)."""

    TOPIC: ClassVar[str] = AI_REQUESTS
    TYPE: ClassVar[str] = "task_request"

    task_index: int = 0
    max_attempts: int = 3

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        return {"task_index": state.task_index, "max_attempts": state.max_attempts}


class TaskMessage(EdgeMessage):
    """`ai_topic`: a task waiting for a solution: a new one, or a retry with the sandbox's feedback."""

    TOPIC: ClassVar[str] = AI_TOPIC
    TYPE: ClassVar[str] = "task"

    statement: str = ""
    entry_point: str = ""
    category: str = ""
    difficulty: int = 1
    retry: bool = False
    feedback: str | None = Field(None, description="why the previous attempt failed (retries)")

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        task = state.task
        last = state.last_attempt
        feedback = last.execution.feedback() if last and last.execution else None
        return {
            "statement": task.statement[:500] if task else "",
            "entry_point": task.entry_point if task else "",
            "category": task.category if task else "",
            "difficulty": task.difficulty if task else 1,
            "retry": bool(state.attempts),
            "feedback": feedback,
        }


class SolutionMessage(EdgeMessage):
    """`ai_solutions`: the consumer's latest code, waiting for the sandbox."""

    TOPIC: ClassVar[str] = AI_SOLUTIONS
    TYPE: ClassVar[str] = "solution"

    code: str = ""
    tokens: int = 0

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        last = state.last_attempt
        return {"code": last.code if last else "", "tokens": last.tokens if last else 0}


class VerifiedSolutionMessage(EdgeMessage):
    """`ai_verified_solutions`: the sandbox's verdict on the final attempt, waiting for review."""

    TOPIC: ClassVar[str] = AI_VERIFIED
    TYPE: ClassVar[str] = "verified_solution"

    passed: bool = False
    tests_passed: int = 0
    tests_total: int = 0

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        last = state.last_attempt
        execution = last.execution if last else None
        return {
            "passed": state.passed,
            "tests_passed": execution.tests_passed if execution else 0,
            "tests_total": execution.tests_total if execution else 0,
        }


class ReviewMessage(EdgeMessage):
    """`ai_reviews`: the reviewer's reward and critique (or a failed producer), waiting for the audit."""

    TOPIC: ClassVar[str] = AI_REVIEWS
    TYPE: ClassVar[str] = "review"

    reward: float | None = None
    critique: str | None = None

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        review = state.review
        return {
            "reward": review.reward if review else None,
            "critique": review.critique[:1000] if review else None,
        }


class ReportMessage(EdgeMessage):
    """`ai_reports`: the supervisor's report on a finished task."""

    TOPIC: ClassVar[str] = AI_REPORTS
    TYPE: ClassVar[str] = "report"

    status: str = ""
    verdict: str | None = None
    summary: str | None = None
    reward: float | None = None
    tokens_used: int = 0

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        report = state.report
        return {
            "status": state.status,
            "verdict": report.verdict if report else None,
            "summary": report.summary[:1000] if report else None,
            "reward": state.review.reward if state.review else None,
            "tokens_used": state.tokens_used,
        }


class BatchAuditMessage(WireModel):
    """`ai_reports`: the supervisor's audit of a whole batch. Flat report fields first, so any
    report reader (the dashboard) shows it; the full audit follows."""

    TOPIC: ClassVar[str] = AI_REPORTS
    TYPE: ClassVar[str] = "batch_audit"

    task_id: str
    verdict: str
    summary: str
    findings: list[str]
    tokens_used: int
    wall_time_s: float
    audit: BatchAudit

    @classmethod
    def of(cls, audit: BatchAudit) -> BatchAuditMessage:
        return cls(
            task_id=f"batch-{audit.batch_id}",
            verdict=audit.verdict,
            summary=audit.summary,
            findings=audit.anomalies,
            tokens_used=audit.tokens_used,
            wall_time_s=audit.wall_time_s,
            audit=audit,
        )

    def wire_key(self) -> str:
        return self.task_id


class TelemetryEvent(WireModel):
    """`ai_telemetry`: one node step. The first six fields are the dashboard's required schema."""

    TOPIC: ClassVar[str] = AI_TELEMETRY
    TYPE: ClassVar[str] = "telemetry"

    agent: str
    timestamp: datetime = Field(default_factory=_now, description="ISO-8601, UTC")
    latency_ms: float = Field(ge=0)
    tokens_used: int = Field(ge=0)
    reward_score: float | None = Field(description="the task's reward once reviewed, else null")
    memory_hits: int = Field(ge=0)
    task_id: str
    run_id: str
    attempt: int = Field(ge=0)
    status: str
    prompt_version: str | None = None
    next_node: str | None = None

    @classmethod
    def from_step(cls, step: StepRecord) -> TelemetryEvent:
        state = step.state
        return cls(
            agent=step.node,
            latency_ms=max(0.0, step.latency_ms),
            tokens_used=max(0, step.tokens_used),
            reward_score=state.review.reward if state.review else None,
            memory_hits=max(0, step.memory_hits),
            task_id=message_key(state),
            run_id=state.run_id,
            attempt=len(state.attempts),
            status=state.status,
            prompt_version=state.prompt_versions.get(system_prompt(step.node)),
            next_node=step.next_node,
        )

    def wire_key(self) -> str:
        return self.task_id

    def wire_headers(self) -> dict[str, str]:
        return {
            **super().wire_headers(),
            H_RUN_ID: self.run_id,
            H_TASK_ID: self.task_id,
            H_ATTEMPT: str(self.attempt),
            H_SOURCE: self.agent,
        }


class DeadLetter(WireModel):
    """`ai_dead_letter`: a message a worker could not handle, why, and the raw bytes."""

    TOPIC: ClassVar[str] = AI_DEAD_LETTER
    TYPE: ClassVar[str] = "dead_letter"

    reason: Literal[
        "malformed_json",
        "not_utf8",
        "empty_value",
        "schema_invalid",
        "unsupported_schema_version",
        "node_error",
        "unknown_topic",
    ]
    error: str = Field(description="what went wrong, readable")
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    raw_value: str | None = Field(
        None, description="the original value: text, or base64 (see raw_encoding)"
    )
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    role: str | None = Field(None, description="the worker role that gave up on it")
    worker: str | None = None
    failed_at: datetime = Field(default_factory=_now)
    task_id: str | None = None
    run_id: str | None = None
    attempt: int | None = None

    @staticmethod
    def encode_raw(value: bytes | None) -> tuple[str | None, Literal["utf-8", "base64"]]:
        if value is None:
            return None, "utf-8"
        try:
            return value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii"), "base64"

    def raw_bytes(self) -> bytes | None:
        """The original value, byte for byte (for replaying it)."""
        if self.raw_value is None:
            return None
        if self.raw_encoding == "base64":
            return base64.b64decode(self.raw_value)
        return self.raw_value.encode("utf-8")

    def wire_key(self) -> str:
        return self.key or self.task_id or ""

    def wire_headers(self) -> dict[str, str]:
        headers = {
            **super().wire_headers(),
            "reason": self.reason,
            "source_topic": self.source_topic,
        }
        if self.run_id:
            headers[H_RUN_ID] = self.run_id
        if self.attempt is not None:
            headers[H_ATTEMPT] = str(self.attempt)
        return headers


EDGE_MESSAGE_BY_TOPIC: dict[str, type[EdgeMessage]] = {
    m.TOPIC: m
    for m in (
        TaskRequest,
        TaskMessage,
        SolutionMessage,
        VerifiedSolutionMessage,
        ReviewMessage,
        ReportMessage,
    )
}
MODEL_BY_TOPIC: dict[str, type[WireModel]] = {
    **EDGE_MESSAGE_BY_TOPIC,
    AI_TELEMETRY: TelemetryEvent,
    AI_DEAD_LETTER: DeadLetter,
}


def message_for_step(step: StepRecord, origin: Origin = "worker") -> EdgeMessage:
    """The transition message of a step, for the input topic of `step.next_node`."""
    model = EDGE_MESSAGE_BY_TOPIC[topic_for_transition(step.next_node)]
    return model.from_state(step.state, source=step.node, origin=origin)


# --------------------------------------------------------------------------- the wire


@dataclass(frozen=True)
class WireRecord:
    """A message as it goes on the wire."""

    key: bytes
    value: bytes
    headers: Headers


def encode(message: WireModel, extra_headers: dict[str, str] | None = None) -> WireRecord:
    """JSON value, key = task id (run id before a task exists), metadata headers."""
    headers = {**message.wire_headers(), **(extra_headers or {})}
    return WireRecord(
        key=message.wire_key().encode("utf-8"),
        value=message.model_dump_json().encode("utf-8"),
        headers=[(k, v.encode("utf-8")) for k, v in headers.items()],
    )


def headers_dict(headers: RawHeaders) -> dict[str, str]:
    """Kafka headers as a str dict (later duplicates win; undecodable bytes are replaced)."""
    result: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for name, value in items:
        if isinstance(value, bytes):
            result[name] = value.decode("utf-8", errors="replace")
        else:
            result[name] = "" if value is None else value
    return result


class MessageDecodeError(ValueError):
    """A message that cannot be used: `reason` is the dead-letter reason, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(model: type[M], value: bytes | str | None) -> M:
    """Parse and validate one value as `model`; MessageDecodeError (with a reason) if unusable."""
    if value is None or len(value) == 0:
        raise MessageDecodeError("empty_value", "the message has no value")
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageDecodeError(
                "not_utf8", f"the value is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
    else:
        text = value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageDecodeError(
            "malformed_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise MessageDecodeError(
            "schema_invalid", f"expected a JSON object, got {type(data).__name__}"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MessageDecodeError(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported (this worker reads {SCHEMA_VERSION})",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MessageDecodeError("schema_invalid", _summarize_validation(model, exc)) from None


def decode_topic(topic: str, value: bytes | str | None) -> WireModel:
    """Decode a value read from one of the mesh's topics (by its unprefixed name)."""
    model = MODEL_BY_TOPIC.get(topic)
    if model is None:
        raise MessageDecodeError("unknown_topic", f"{topic!r} is not one of the mesh's topics")
    return decode(model, value)


def _summarize_validation(model: type[BaseModel], exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"not a valid {model.__name__}: " + "; ".join(parts) + more


def dead_letter_for(
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: RawHeaders,
    role: str | None = None,
    worker: str | None = None,
    message: EdgeMessage | None = None,
) -> DeadLetter:
    """A DeadLetter for a consumed record (identity taken from the decoded message or headers)."""
    raw, encoding = DeadLetter.encode_raw(value)
    hdrs = headers_dict(headers)
    attempt: int | None = message.attempt if message else None
    if attempt is None and hdrs.get(H_ATTEMPT, "").isdigit():
        attempt = int(hdrs[H_ATTEMPT])
    return DeadLetter.model_validate(
        {
            "reason": reason,
            "error": error,
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key.decode("utf-8", errors="replace") if key is not None else None,
            "headers": hdrs,
            "raw_value": raw,
            "raw_encoding": encoding,
            "role": role,
            "worker": worker,
            "task_id": message.task_id if message else hdrs.get(H_TASK_ID),
            "run_id": message.run_id if message else hdrs.get(H_RUN_ID),
            "attempt": attempt,
        }
    )
