"""Build the mesh's StateGraph: producer -> consumer -> sandbox -(retry)-> reviewer -> supervisor."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graph.edges import EdgeSink
from graph.routing import (
    CONSUMER,
    NODES,
    PRODUCER,
    REVIEWER,
    SANDBOX,
    SUPERVISOR,
    route_after_producer,
    route_after_sandbox,
)
from graph.state import MeshState
from graph.step import run_step


def _observed_node(name: str, sink: EdgeSink | None) -> Any:
    """A graph node that runs `name` and hands the transition to the sink."""

    def node(state: MeshState, config: RunnableConfig) -> dict[str, Any]:
        update, record = run_step(name, state, config)
        if sink is not None:
            sink.on_step(record)
        return update

    node.__name__ = name
    return node


def build_graph(edge_sink: EdgeSink | None = None) -> StateGraph:
    """The uncompiled graph; every transition is handed to `edge_sink` when one is given."""
    builder = StateGraph(MeshState)
    for name in NODES:
        builder.add_node(name, _observed_node(name, edge_sink))
    builder.add_edge(START, PRODUCER)
    builder.add_conditional_edges(PRODUCER, route_after_producer)
    builder.add_edge(CONSUMER, SANDBOX)
    builder.add_conditional_edges(SANDBOX, route_after_sandbox)
    builder.add_edge(REVIEWER, SUPERVISOR)
    builder.add_edge(SUPERVISOR, END)
    return builder
