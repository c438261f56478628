"""The graph's shape, declared once: every node, the topic it reads, and where it goes next.

The builder's edges (`graph.builder`), the workers' routing (`next_node`) and the topic each
transition travels on (`topic_for_transition`) are all read from `ROUTES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from graph.state import MeshState
from graph.topics import AI_REPORTS, AI_REQUESTS, AI_REVIEWS, AI_SOLUTIONS, AI_TOPIC, AI_VERIFIED

PRODUCER: Final = "producer"
CONSUMER: Final = "consumer"
SANDBOX: Final = "sandbox"
REVIEWER: Final = "reviewer"
SUPERVISOR: Final = "supervisor"
END: Final = "__end__"
"""LangGraph's END: where the supervisor sends a finished task."""


def route_after_producer(state: MeshState) -> Literal["consumer", "supervisor"]:
    """A validated task goes to the consumer; a producer failure goes straight to the audit."""
    return CONSUMER if state.task is not None and state.status != "failed" else SUPERVISOR


def route_after_sandbox(state: MeshState) -> Literal["consumer", "reviewer"]:
    """Retry with the error while attempts remain and the code fails; otherwise review. With
    `public` feedback the loop stops on the public tests (the hidden verdict never decides);
    with model-written tests (no public test) it draws every attempt for CodeT to choose from."""
    last = state.last_attempt
    if state.feedback == "public":
        done = last is not None and last.public_passed and not state.written_tests
    else:
        done = state.passed
    if done or len(state.attempts) >= state.max_attempts:
        return REVIEWER
    return CONSUMER


Router = Callable[[MeshState], str]


@dataclass(frozen=True)
class Route:
    """One node: the topic its workers consume, and its successor (a node, or a router)."""

    input_topic: str
    then: str | Router


ROUTES: dict[str, Route] = {
    PRODUCER: Route(AI_REQUESTS, route_after_producer),
    CONSUMER: Route(AI_TOPIC, SANDBOX),
    SANDBOX: Route(AI_SOLUTIONS, route_after_sandbox),
    REVIEWER: Route(AI_VERIFIED, SUPERVISOR),
    SUPERVISOR: Route(AI_REVIEWS, END),
}
"""The graph, in order: the first node is the entry point."""

NODES: tuple[str, ...] = tuple(ROUTES)
ENTRY: Final = PRODUCER


def next_node(node: str, state: MeshState) -> str:
    """Where `state` goes after `node` ran ("__end__" when the task is finished)."""
    then = ROUTES[node].then
    return then if isinstance(then, str) else then(state)


def input_topic(node: str) -> str:
    """The topic a node's workers consume (ValueError for an unknown node)."""
    try:
        return ROUTES[node].input_topic
    except KeyError:
        raise ValueError(f"unknown node {node!r}; expected one of {', '.join(NODES)}") from None


def topic_for_transition(destination: str) -> str:
    """The topic a transition travels on: its destination's input topic (`ai_reports` at END)."""
    return AI_REPORTS if destination == END else input_topic(destination)
