"""TEST DOUBLE: a stand-in for `graph.step.run_step`, for testing the Kafka worker machinery.

It does not call any model or sandbox. Each node returns a small, realistic update; the
state is merged with the real `graph.state.apply_update` and routed with the real
`graph.routing.next_node`, so the worker sees the same transitions the graph would make.

Markers in the task statement steer it:
  FAIL_FIRST  the sandbox fails attempt 1 (so the task takes the retry edge once)
  POISON      the consumer node raises on every try (a poison message)
  HOLD=<s>    the consumer node sleeps <s> seconds (to kill a worker mid-task); if the
              environment variable STAND_IN_MARK_DIR is set, it first writes a file named
              after its pid there, so a test knows which worker holds the message
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.edges import StepRecord
from graph.routing import next_node
from graph.state import Attempt, MeshState, Report, Review, ReviewScores, Task, apply_update
from sandbox.base import ExecutionResult


class StandInPoison(RuntimeError):
    """Raised by the stand-in consumer for a task marked POISON."""


def stand_in_task(statement: str = "add two numbers", **fields: Any) -> Task:
    """A tiny task for the stand-in nodes (markers go in the statement)."""
    return Task(
        statement=statement,
        signature="def add(a: int, b: int) -> int",
        entry_point="add",
        tests=["assert add(1, 2) == 3"],
        **fields,
    )


def _statement(state: MeshState) -> str:
    return state.task.statement if state.task else ""


def stand_in_update(node: str, state: MeshState) -> dict[str, Any]:
    """The stand-in node's partial update for `state`."""
    statement = _statement(state)
    if node == "producer":
        task = state.task or stand_in_task(f"stand-in task {state.task_index}")
        return {"task": task, "status": "solving"}
    if node == "consumer":
        if "POISON" in statement:
            raise StandInPoison("stand-in consumer cannot handle a POISON task")
        hold = re.search(r"HOLD=([0-9.]+)", statement)
        if hold:
            mark_dir = os.environ.get("STAND_IN_MARK_DIR")
            if mark_dir:
                Path(mark_dir, str(os.getpid())).write_text(statement)
            time.sleep(float(hold.group(1)))
        number = len(state.attempts) + 1
        code = f"def add(a, b):\n    return a + b  # try {number}\n"
        return {
            "attempts": [Attempt(number=number, code=code, tokens=7)],
            "tokens_used": 7,
            "memory_hits": 1,
            "status": "solving",
        }
    if node == "sandbox":
        last = state.attempts[-1]
        passed = not ("FAIL_FIRST" in statement and last.number == 1)
        execution = ExecutionResult(
            passed=passed,
            tests_passed=1 if passed else 0,
            tests_total=1,
            error_type=None if passed else "AssertionError",
            backend="stand-in",
        )
        return {"attempts": [last.model_copy(update={"execution": execution})], "status": "tested"}
    if node == "reviewer":
        reward = 0.9 if state.passed else 0.1
        review = Review(
            reward=reward,
            scores=ReviewScores(correctness=reward, efficiency=1, readability=1, adherence=1),
            critique="stand-in review",
        )
        return {"review": review, "status": "reviewed", "tokens_used": 3}
    if node == "supervisor":
        return {"report": Report(verdict="ok", summary="stand-in report"), "status": "done"}
    raise ValueError(f"unknown node {node!r}")


def stand_in_step(
    node: str, state: MeshState, config: RunnableConfig | None = None
) -> tuple[dict[str, Any], StepRecord]:
    """Same shape and routing as `graph.step.run_step`, with the stand-in nodes."""
    started = time.perf_counter()
    update = stand_in_update(node, state)
    after = apply_update(state, update)
    record = StepRecord(
        node=node,
        next_node=next_node(node, after),
        state=after,
        latency_ms=(time.perf_counter() - started) * 1000,
        tokens_used=int(update.get("tokens_used", 0)),
        memory_hits=int(update.get("memory_hits", 0)),
    )
    return update, record


def trivial_step(
    node: str, state: MeshState, config: RunnableConfig | None = None
) -> tuple[dict[str, Any], StepRecord]:
    """TEST DOUBLE for benchmarks: a node that changes nothing and routes as the graph does."""
    return {}, StepRecord(node=node, next_node=next_node(node, state), state=state, latency_ms=0.0)
