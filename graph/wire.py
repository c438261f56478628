"""The graph's transitions as wire messages: one model per topic, each carrying the full
MeshState (so any worker of the destination node can continue the task) plus a short summary for
people and dashboards reading the topic; the telemetry event of a step; the batch audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from foundation.settings import Settings
from graph.edges import StepRecord
from graph.routing import topic_for_transition
from graph.state import BatchAudit, MeshState
from graph.topics import (
    AI_DEAD_LETTER,
    AI_REPORTS,
    AI_REQUESTS,
    AI_REVIEWS,
    AI_SERVER_TASKS,
    AI_SOLUTIONS,
    AI_TELEMETRY,
    AI_TOPIC,
    AI_VERIFIED,
)
from kafka_edges.codec import (
    H_ATTEMPT,
    H_ORIGIN,
    H_RUN_ID,
    H_SOURCE,
    H_TASK_ID,
    MessageDecodeError,
    WireModel,
    decode,
    utc_now,
)
from kafka_edges.dead_letters import DeadLetter
from kafka_edges.reader import Record, read_topic
from prompt_registry import adapter_prompt, system_prompt

Origin = Literal["worker", "in_process", "feed"]
"""Who published a transition: a NodeWorker (the distributed run: workers continue it), the
in-process graph (a record of a run happening elsewhere: workers must NOT continue it), or a feeder."""


def message_key(state: MeshState) -> str:
    """The Kafka key of a state's messages: the task id, or the run id before a task exists."""
    return state.task.task_id if state.task is not None else state.run_id


class EdgeMessage(WireModel):
    """A transition between nodes: identity, the full state, and (in subclasses) a summary."""

    message_type: str
    task_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    attempt: int = Field(ge=0, description="consumer attempts made so far (len(state.attempts))")
    source: str = Field(description="the node that produced the message, or 'feed'")
    origin: Origin = "worker"
    produced_at: datetime = Field(default_factory=utc_now)
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
        feedback = last.feedback(state.feedback) if last and last.execution else None
        return {
            "statement": task.statement[:500] if task else "",
            "entry_point": task.entry_point if task else "",
            "category": task.category if task else "",
            "difficulty": task.difficulty if task else 1,
            "retry": bool(state.attempts),
            "feedback": feedback,
        }


class ServerTaskMessage(TaskMessage):
    """`ai_server_tasks`: a task for the LangGraph server's intake (one server run each)."""

    TOPIC: ClassVar[str] = AI_SERVER_TASKS
    TYPE: ClassVar[str] = "server_task"


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
    """`ai_verified_solutions`: the sandbox's verdict on the answer submitted, waiting for review."""

    TOPIC: ClassVar[str] = AI_VERIFIED
    TYPE: ClassVar[str] = "verified_solution"

    passed: bool = False
    tests_passed: int = 0
    tests_total: int = 0

    @classmethod
    def summarize(cls, state: MeshState) -> dict[str, Any]:
        submitted = state.submitted
        execution = submitted.execution if submitted else None
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
    timestamp: datetime = Field(default_factory=utc_now, description="ISO-8601, UTC")
    latency_ms: float = Field(ge=0)
    tokens_used: int = Field(ge=0)
    reward_score: float | None = Field(description="the task's reward once reviewed, else null")
    memory_hits: int = Field(ge=0)
    task_id: str
    run_id: str
    attempt: int = Field(ge=0)
    status: str
    prompt_version: str | None = None
    adapter_version: str | None = None
    """The version of the agent's LoRA adapter (`<agent>.adapter`) the step used, if it has one."""
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
            adapter_version=state.prompt_versions.get(adapter_prompt(step.node)),
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
    AI_SERVER_TASKS: ServerTaskMessage,
    AI_TELEMETRY: TelemetryEvent,
    AI_DEAD_LETTER: DeadLetter,
}


def message_for_step(step: StepRecord, origin: Origin = "worker") -> EdgeMessage:
    """The transition message of a step, for the input topic of `step.next_node`."""
    model = EDGE_MESSAGE_BY_TOPIC[topic_for_transition(step.next_node)]
    return model.from_state(step.state, source=step.node, origin=origin)


def decode_topic(topic: str, value: bytes | str | None) -> WireModel:
    """Decode a value read from one of the mesh's topics (by its unprefixed name)."""
    model = MODEL_BY_TOPIC.get(topic)
    if model is None:
        raise MessageDecodeError("unknown_topic", f"{topic!r} is not one of the mesh's topics")
    return decode(model, value)


def read_mesh_topic(topic: str, settings: Settings, **options: Any) -> list[Record]:
    """`kafka_edges.reader.read_topic` with the mesh's models: records carry decoded messages."""
    return read_topic(topic, settings, models=MODEL_BY_TOPIC, **options)
