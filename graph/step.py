"""Run one node on a state: the unit shared by the in-process graph and the Kafka workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.edges import StepRecord
from graph.routing import next_node
from graph.state import MeshState, apply_update

NodeFunction = Callable[[MeshState, Runtime[MeshContext]], dict[str, Any]]
"""A node: the state and the runtime (whose context carries the services) -> a partial update."""

NodeFunctions = Mapping[str, NodeFunction]
"""The function of every node in `graph.routing.ROUTES` (see `nodes.NODE_FUNCTIONS`)."""


def run_step(
    functions: NodeFunctions, node: str, state: MeshState, runtime: Runtime[MeshContext]
) -> tuple[dict[str, Any], StepRecord]:
    """Run `node` on `state`; return its update and the step record (next node, cost)."""
    started = time.perf_counter()
    update = functions[node](state, runtime)
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


StepFunction = Callable[[str, MeshState], tuple[dict[str, Any], StepRecord]]
"""One node's step with its functions and context bound: (node, state) -> (update, record)."""


def bind_step(functions: NodeFunctions, context: MeshContext) -> StepFunction:
    """The step function a worker runs: `run_step` with these node functions and services."""
    runtime: Runtime[MeshContext] = Runtime(context=context)

    def step(node: str, state: MeshState) -> tuple[dict[str, Any], StepRecord]:
        return run_step(functions, node, state, runtime)

    return step
