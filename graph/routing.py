"""Routing functions shared by the in-process graph and the Kafka workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from graph.state import MeshState

PRODUCER: Final = "producer"
CONSUMER: Final = "consumer"
SANDBOX: Final = "sandbox"
REVIEWER: Final = "reviewer"
SUPERVISOR: Final = "supervisor"
NODES = (PRODUCER, CONSUMER, SANDBOX, REVIEWER, SUPERVISOR)


def route_after_producer(state: MeshState) -> Literal["consumer", "supervisor"]:
    """A validated task goes to the consumer; a producer failure goes straight to the audit."""
    return CONSUMER if state.task is not None and state.status != "failed" else SUPERVISOR


def route_after_consumer(state: MeshState) -> Literal["sandbox"]:
    """Every attempt is run in the sandbox."""
    return SANDBOX


def route_after_sandbox(state: MeshState) -> Literal["consumer", "reviewer"]:
    """Retry with the error while attempts remain and the code fails; otherwise review."""
    if state.passed or len(state.attempts) >= state.max_attempts:
        return REVIEWER
    return CONSUMER


def route_after_reviewer(state: MeshState) -> Literal["supervisor"]:
    """Every review is audited."""
    return SUPERVISOR


def route_after_supervisor(state: MeshState) -> Literal["__end__"]:
    """The supervisor ends a task's run."""
    return "__end__"


ROUTERS: dict[str, Callable[[MeshState], str]] = {
    PRODUCER: route_after_producer,
    CONSUMER: route_after_consumer,
    SANDBOX: route_after_sandbox,
    REVIEWER: route_after_reviewer,
    SUPERVISOR: route_after_supervisor,
}


def next_node(node: str, state: MeshState) -> str:
    """Where `state` goes after `node` ran ("__end__" when the task is finished)."""
    return ROUTERS[node](state)
