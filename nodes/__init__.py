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

__all__ = ["NODE_FUNCTIONS"]
