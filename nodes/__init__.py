"""The five agents, one module each, as plain functions of (state, runtime) -> update, and the
helpers they share (prompts, task parsing and grounding, code extraction and quality)."""

from graph.routing import CONSUMER, PRODUCER, REVIEWER, SANDBOX, SUPERVISOR
from graph.step import NodeFunction
from nodes.consumer import consumer
from nodes.producer import producer
from nodes.reviewer import review
from nodes.sandbox_node import execute
from nodes.supervisor import supervise

NODE_FUNCTIONS: dict[str, NodeFunction] = {
    PRODUCER: producer,
    CONSUMER: consumer,
    SANDBOX: execute,
    REVIEWER: review,
    SUPERVISOR: supervise,
}
"""The function of every node of `graph.routing.ROUTES`."""
MEMORY_NODES: frozenset[str] = frozenset({PRODUCER, CONSUMER, SANDBOX, REVIEWER})
"""The nodes that read or write memory (`context.memory`); the supervisor never does."""

__all__ = ["MEMORY_NODES", "NODE_FUNCTIONS"]
