"""Run one node on a state: the unit shared by the in-process graph and the Kafka workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.edges import StepRecord
from graph.routing import CONSUMER, PRODUCER, REVIEWER, SANDBOX, SUPERVISOR, next_node
from graph.state import MeshState, apply_update
from nodes.consumer import consumer
from nodes.executor import execute
from nodes.producer import producer
from nodes.reviewer import review
from nodes.supervisor import supervise

NodeFunction = Callable[[MeshState, RunnableConfig], dict[str, Any]]

NODE_FUNCTIONS: dict[str, NodeFunction] = {
    PRODUCER: producer,
    CONSUMER: consumer,
    SANDBOX: execute,
    REVIEWER: review,
    SUPERVISOR: supervise,
}


def run_step(
    node: str, state: MeshState, config: RunnableConfig | None = None
) -> tuple[dict[str, Any], StepRecord]:
    """Run `node` on `state`; return its update and the step record (next node, cost)."""
    started = time.perf_counter()
    update = NODE_FUNCTIONS[node](state, config or {})
    latency_ms = (time.perf_counter() - started) * 1000
    after = apply_update(state, update)
    record = StepRecord(
        node=node,
        next_node=next_node(node, after),
        state=after,
        latency_ms=latency_ms,
        tokens_used=int(update.get("tokens_used", 0)),
        memory_hits=int(update.get("memory_hits", 0)),
    )
    return update, record
