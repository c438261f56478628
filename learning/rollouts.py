"""Rollouts: each graph run (one `MeshState.run_id`, i.e. one thread) is one rollout.

`RolloutRecorder` is an `EdgeSink`: it turns every node step into a span, adds the LLM calls of
that step when its LangChain callback handler is installed (`instrument` / `llm_handler`), and
at the run's last step (supervisor -> __end__) closes the rollout with its reward
(`state.review.reward`; 0.0 for a run that was never reviewed). Rollouts, spans and the reward
each prompt version earned are written to the learning store (`prompt_registry.db`); listeners (the periodic
optimizer, the agent-lightning bridge) receive every finished rollout.

Cheap by design: a few inserts per step, no agent-lightning import
(`learning.lightning.to_agl_spans` converts a finished rollout into agent-lightning spans).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from foundation.database import Connection
from graph.edges import StepRecord
from graph.state import MeshState, Task
from nodes.prompts import PRODUCER_SYSTEM, REVIEWER_SYSTEM
from prompt_registry.db import LearningDB, open_db
from sandbox import ExecutionResult

if TYPE_CHECKING:
    from graph.context import MeshContext
    from prompt_registry.registry import PromptRegistry

log = logging.getLogger(__name__)

AttrValue = str | int | float | bool
SpanKind = Literal["node", "llm", "reward"]
END = "__end__"
LAST_NODE = "supervisor"
MAX_CHARS = 2000
"""Longest text kept in a span attribute (prompts, completions, sandbox feedback)."""

UNREWARDED_PROMPTS = frozenset({REVIEWER_SYSTEM})
"""Prompts whose text cannot change the reward (the critique is not scored): no reward recorded."""


@dataclass
class SpanRecord:
    """One span of a rollout: a node step, an LLM call inside it, or the final reward."""

    name: str
    kind: SpanKind
    start: float
    end: float
    attributes: dict[str, AttrValue] = field(default_factory=dict)


@dataclass
class RolloutTrace:
    """One graph run as a rollout: its spans, and once finished its reward(s) and outcome."""

    rollout_id: str
    source: str
    started: float
    spans: list[SpanRecord] = field(default_factory=list)
    task: Task | None = None
    finished: float | None = None
    status: str = "running"
    reward: float | None = None
    passed: bool = False
    reviewed: bool = False
    attempts: int = 0
    tokens: int = 0
    prompt_versions: dict[str, str] = field(default_factory=dict)
    rewards: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.finished is not None


RolloutListener = Callable[[RolloutTrace], None]


def _clip(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


LEARNABLE, TOO_EASY, UNSOLVED = 1.0, 0.5, 0.25
"""What a published task is worth to the loop, by how the consumer fared on it."""


def task_worth(state: MeshState) -> float:
    """A produced task's worth (after Absolute Zero's learnability reward): solved after a
    retry, it taught the loop something (1.0); solved at once, it was too easy (0.5); never
    solved, it was too hard or ambiguous (0.25)."""
    if not state.passed:
        return UNSOLVED
    return LEARNABLE if len(state.attempts) > 1 else TOO_EASY


def prompt_rewards(state: MeshState, spans: Sequence[SpanRecord]) -> dict[str, float]:
    """The reward each prompt used in a finished run earned.

    consumer (and any other prompt that shapes the solution): the mesh reward, when the consumer
    ran. producer: only when it invented the task with the LLM; what the task was worth
    (`task_worth`) divided by the tries it took, 0 when it failed. reviewer: none (its critique
    does not change the score).
    """
    mesh = state.review.reward if state.review else 0.0
    solved_something = bool(state.attempts)
    producer_calls = sum(
        1 for s in spans if s.kind == "llm" and s.attributes.get("aimesh.node") == "producer"
    )
    producer_used_llm = producer_calls > 0 or any(
        s.kind == "node" and s.name == "node.producer" and int(s.attributes.get("aimesh.tokens", 0))
        for s in spans
    )
    rewards: dict[str, float] = {}
    for name in state.prompt_versions:
        if name in UNREWARDED_PROMPTS:
            continue
        if name == PRODUCER_SYSTEM:
            if producer_used_llm:
                published = state.task is not None and solved_something
                worth = task_worth(state) if published else 0.0
                rewards[name] = round(worth / max(1, producer_calls), 4)
            continue
        if solved_something:
            rewards[name] = mesh
    return rewards


def _error_types(result: ExecutionResult) -> list[str]:
    """The kinds of failure of a run: its own error, else each failing test's."""
    if result.error_type:
        return [result.error_type]
    return sorted({failure.error_type for failure in result.failures})


def _node_attributes(step: StepRecord) -> dict[str, AttrValue]:
    state = step.state
    attrs: dict[str, AttrValue] = {
        "aimesh.node": step.node,
        "aimesh.next_node": step.next_node,
        "aimesh.latency_ms": round(step.latency_ms, 2),
        "aimesh.tokens": step.tokens_used,
        "aimesh.memory_hits": step.memory_hits,
        "aimesh.status": state.status,
        "aimesh.run_id": state.run_id,
    }
    if state.task is not None:
        attrs["aimesh.task_id"] = state.task.task_id
    if state.error:
        attrs["aimesh.error"] = _clip(state.error, 500)
    last = state.last_attempt
    if step.node == "producer" and state.task is not None:
        attrs["aimesh.task.category"] = state.task.category
        attrs["aimesh.task.difficulty"] = state.task.difficulty
    elif step.node == "consumer" and last is not None:
        attrs["aimesh.attempt"] = last.number
    elif step.node == "sandbox" and last is not None and last.execution is not None:
        result = last.execution
        attrs.update(
            {
                "aimesh.attempt": last.number,
                "aimesh.sandbox.passed": result.passed,
                "aimesh.sandbox.tests_passed": result.tests_passed,
                "aimesh.sandbox.tests_total": result.tests_total,
                "aimesh.sandbox.timed_out": result.timed_out,
            }
        )
        if not result.passed:
            # what a retry may see: the optimizer reads these spans, and no hidden test's input
            # or expected value may reach a prompt
            attrs["aimesh.sandbox.feedback"] = _clip(last.feedback(), 600)
            attrs["aimesh.sandbox.error_types"] = ",".join(_error_types(result))
    elif step.node == "reviewer" and state.review is not None:
        attrs["aimesh.review.reward"] = state.review.reward
        for key, value in state.review.scores.model_dump().items():
            attrs[f"aimesh.review.{key}"] = value
    elif step.node == "supervisor" and state.report is not None:
        attrs["aimesh.report.verdict"] = state.report.verdict
        attrs["aimesh.report.findings"] = len(state.report.findings)
    return attrs


class LLMCallCapture(BaseCallbackHandler):
    """LangChain callback handler: turns each chat-model call into an `llm` span with OpenAI-style
    ``gen_ai.*`` attributes (what agent-lightning's TraceToMessages adapter reads). The span is
    attached to the node step that the same thread reports next."""

    run_inline = True
    raise_error = False

    def __init__(self, recorder: RolloutRecorder) -> None:
        self._recorder = recorder
        self._open: dict[UUID, tuple[float, list[BaseMessage], str, str]] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        params = kwargs.get("invocation_params") or {}
        model = str(params.get("model") or params.get("model_name") or params.get("_type") or "")
        node = str((metadata or {}).get("langgraph_node", ""))
        with self._lock:
            self._open[run_id] = (time.time(), messages[0] if messages else [], model, node)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> Any:
        self._close(run_id, response=response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._close(run_id, error=error)

    def _close(
        self, run_id: UUID, response: LLMResult | None = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            opened = self._open.pop(run_id, None)
        if opened is None:
            return
        start, messages, model, node = opened
        attrs: dict[str, AttrValue] = {"gen_ai.system": "langchain", "gen_ai.request.model": model}
        if node:
            attrs["aimesh.node"] = node
        for i, message in enumerate(messages):
            attrs[f"gen_ai.prompt.{i}.role"] = _role(message)
            attrs[f"gen_ai.prompt.{i}.content"] = _clip(_content(message))
        if response is not None and response.generations and response.generations[0]:
            generation = response.generations[0][0]
            attrs["gen_ai.completion.0.role"] = "assistant"
            attrs["gen_ai.completion.0.content"] = _clip(generation.text)
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
            if usage:
                attrs["gen_ai.usage.prompt_tokens"] = int(usage.get("input_tokens", 0))
                attrs["gen_ai.usage.completion_tokens"] = int(usage.get("output_tokens", 0))
        if error is not None:
            attrs["aimesh.error"] = _clip(f"{type(error).__name__}: {error}", 500)
        span = SpanRecord(f"llm.{node or 'call'}", "llm", start, time.time(), attrs)
        self._recorder._add_pending(span)


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant"}.get(message.type, message.type)


def _content(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else json.dumps(message.content)


class RolloutRecorder:
    """EdgeSink recording each graph run as a rollout (spans + reward) into the learning store.

    Args:
        db: the learning SQLite file or an open `LearningDB`; None keeps rollouts in memory only.
        source: label stored with each rollout ("mesh", "learn-train", "learn-val", ...).
        registry: when given, each finished rollout's rewards are added to the statistics of the
            prompt versions it used (`PromptRegistry.record_reward`).
        listeners: called with every finished `RolloutTrace` (errors are logged, not raised).
        keep: how many finished rollouts to keep in memory (`finished`).
    """

    def __init__(
        self,
        db: LearningDB | Path | str | None = None,
        *,
        source: str = "mesh",
        registry: PromptRegistry | None = None,
        listeners: Sequence[RolloutListener] = (),
        keep: int = 256,
    ) -> None:
        self.db = open_db(db) if db is not None else None
        self.source = source
        self.registry = registry
        self.listeners: list[RolloutListener] = list(listeners)
        self.finished: deque[RolloutTrace] = deque(maxlen=keep)
        self._open: dict[str, RolloutTrace] = {}
        self._pending: dict[int, list[SpanRecord]] = {}
        self._lock = threading.RLock()
        self.llm_handler = LLMCallCapture(self)

    # -- wiring ------------------------------------------------------------------------------

    def instrument(self, services: MeshContext) -> MeshContext:
        """A copy of `services` whose chat model reports its calls to this recorder."""
        llm = services.llm
        callbacks = list(llm.callbacks) if isinstance(llm.callbacks, list) else []
        copied = llm.model_copy(update={"callbacks": [*callbacks, self.llm_handler]})
        return dataclasses.replace(services, llm=copied)

    def add_listener(self, listener: RolloutListener) -> None:
        self.listeners.append(listener)

    # -- EdgeSink ----------------------------------------------------------------------------

    def on_step(self, step: StepRecord) -> None:
        """Record one node step; close the rollout at supervisor -> __end__."""
        now = time.time()
        state = step.state
        run_id = state.run_id
        with self._lock:
            llm_spans = self._pending.pop(threading.get_ident(), [])
            trace = self._open.get(run_id)
            new = trace is None
            if trace is None:
                trace = RolloutTrace(run_id, self.source, started=now - step.latency_ms / 1000)
                self._open[run_id] = trace
            trace.task = state.task or trace.task
            spans = [
                *llm_spans,
                SpanRecord(
                    f"node.{step.node}",
                    "node",
                    now - step.latency_ms / 1000,
                    now,
                    _node_attributes(step),
                ),
            ]
            last = step.node == LAST_NODE and step.next_node == END
            if last:
                self._finish(trace, state, now, spans)
                spans.append(
                    SpanRecord(
                        "reward",
                        "reward",
                        now,
                        now,
                        {"aimesh.reward": trace.reward or 0.0, "aimesh.passed": trace.passed},
                    )
                )
            trace.spans.extend(spans)
            if self.db is not None:
                self._write(trace, spans, new=new)
            if last:
                del self._open[run_id]
                self.finished.append(trace)
        if last:
            if self.registry is not None:
                for name, reward in trace.rewards.items():
                    version = trace.prompt_versions.get(name)
                    if version:
                        self.registry.record_reward(name, version, reward)
            for listener in list(self.listeners):
                try:
                    listener(trace)
                except Exception:  # a listener must not break the graph run
                    log.exception("rollout listener failed")

    def _add_pending(self, span: SpanRecord) -> None:
        with self._lock:
            self._pending.setdefault(threading.get_ident(), []).append(span)

    def _finish(
        self, trace: RolloutTrace, state: MeshState, now: float, current: list[SpanRecord]
    ) -> None:
        trace.finished = now
        trace.status = state.status
        trace.reviewed = state.review is not None
        trace.reward = state.review.reward if state.review else 0.0
        trace.passed = state.passed
        trace.attempts = len(state.attempts)
        trace.tokens = state.tokens_used
        trace.prompt_versions = dict(state.prompt_versions)
        trace.scores = state.review.scores.model_dump() if state.review else {}
        # Earlier steps: from the store when there is one (it also has the steps other worker
        # processes recorded for this run), else from memory.
        earlier = self._stored_spans(trace.rollout_id) if self.db is not None else trace.spans
        trace.rewards = prompt_rewards(state, [*earlier, *current])

    def _stored_spans(self, rollout_id: str) -> list[SpanRecord]:
        """Spans other processes recorded for this rollout (distributed workers share the file)."""
        assert self.db is not None
        return [
            SpanRecord(r["name"], r["kind"], r["start"], r["end"], json.loads(r["attributes"]))
            for r in self.db.query("SELECT * FROM spans WHERE rollout_id = ?", (rollout_id,))
        ]

    def _write(self, trace: RolloutTrace, spans: list[SpanRecord], *, new: bool) -> None:
        assert self.db is not None
        with self.db.transaction() as conn:
            if new:
                conn.execute(
                    "INSERT INTO rollouts (rollout_id, source, task_id, task_json, started, status)"
                    " VALUES (?, ?, ?, ?, ?, 'running') ON CONFLICT DO NOTHING",
                    (trace.rollout_id, trace.source, None, None, trace.started),
                )
            if trace.task is not None:
                conn.execute(
                    "UPDATE rollouts SET task_id = ?, task_json = ? WHERE rollout_id = ?"
                    " AND task_json IS NULL",
                    (trace.task.task_id, trace.task.model_dump_json(), trace.rollout_id),
                )
            self._append_spans(conn, trace.rollout_id, spans)
            if trace.done:
                self._write_outcome(conn, trace)

    @staticmethod
    def _append_spans(conn: Connection, rollout_id: str, spans: list[SpanRecord]) -> None:
        """Append spans after the rollout's last one (numbered inside the write lock, so
        processes sharing a rollout never collide)."""
        row = conn.execute(
            "SELECT COALESCE(MAX(seq) + 1, 0) AS seq FROM spans WHERE rollout_id = ?",
            (rollout_id,),
        ).fetchone()
        conn.executemany(
            'INSERT INTO spans (rollout_id, seq, name, kind, start, "end", attributes)'
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    rollout_id,
                    int(row["seq"]) + i,
                    span.name,
                    span.kind,
                    span.start,
                    span.end,
                    json.dumps(span.attributes),
                )
                for i, span in enumerate(spans)
            ],
        )

    @staticmethod
    def _write_outcome(conn: Connection, trace: RolloutTrace) -> None:
        """A finished rollout's status, reward and per-prompt rewards."""
        conn.execute(
            "UPDATE rollouts SET finished = ?, status = ?, reward = ?, passed = ?,"
            " attempts = ?, tokens = ?, prompt_versions = ? WHERE rollout_id = ?",
            (
                trace.finished,
                trace.status,
                trace.reward,
                int(trace.passed),
                trace.attempts,
                trace.tokens,
                json.dumps(trace.prompt_versions),
                trace.rollout_id,
            ),
        )
        conn.executemany(
            "INSERT INTO rewards (rollout_id, name, version, reward, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (rollout_id, name) DO UPDATE SET version = excluded.version,"
            " reward = excluded.reward, at = excluded.at",
            [
                (
                    trace.rollout_id,
                    name,
                    trace.prompt_versions.get(name, "?"),
                    reward,
                    trace.finished,
                )
                for name, reward in trace.rewards.items()
            ],
        )

    def link_agl_rollout(self, rollout_id: str, agl_rollout_id: str) -> None:
        """Remember which agent-lightning rollout a recorded rollout was reported as."""
        if self.db is not None:
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE rollouts SET agl_rollout_id = ? WHERE rollout_id = ?",
                    (agl_rollout_id, rollout_id),
                )


# -- reading back ---------------------------------------------------------------------------


def load_rollouts(
    db: LearningDB, *, source: str | None = None, limit: int = 100
) -> list[RolloutTrace]:
    """The most recently finished rollouts (newest first), with their spans and rewards."""
    where = "WHERE finished IS NOT NULL" + (" AND source = ?" if source else "")
    params: tuple[Any, ...] = (source,) if source else ()
    rows = db.query(
        f"SELECT * FROM rollouts {where} ORDER BY finished DESC LIMIT ?", (*params, limit)
    )
    traces = []
    for row in rows:
        spans = [
            SpanRecord(s["name"], s["kind"], s["start"], s["end"], json.loads(s["attributes"]))
            for s in db.query(
                "SELECT * FROM spans WHERE rollout_id = ? ORDER BY seq", (row["rollout_id"],)
            )
        ]
        rewards = {
            r["name"]: r["reward"]
            for r in db.query(
                "SELECT name, reward FROM rewards WHERE rollout_id = ?", (row["rollout_id"],)
            )
        }
        traces.append(
            RolloutTrace(
                rollout_id=row["rollout_id"],
                source=row["source"],
                started=row["started"],
                spans=spans,
                task=Task.model_validate_json(row["task_json"]) if row["task_json"] else None,
                finished=row["finished"],
                status=row["status"],
                reward=row["reward"],
                passed=bool(row["passed"]),
                attempts=row["attempts"] or 0,
                tokens=row["tokens"] or 0,
                prompt_versions=json.loads(row["prompt_versions"]),
                rewards=rewards,
            )
        )
    return traces
