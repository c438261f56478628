"""Build the mesh's StateGraph from the routing table: producer -> consumer -> sandbox -(retry)->
reviewer -> supervisor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.edges import EdgeSink
from graph.routing import ENTRY, ROUTES
from graph.state import MeshState
from graph.step import NodeFunctions, run_step

GRAPH_NAME = "ai-mesh"

MeshGraph = CompiledStateGraph[MeshState, MeshContext, MeshState, MeshState]
"""The compiled graph: MeshState in and out, MeshContext as the runtime context."""

ContextFactory = Callable[[], MeshContext]
"""Builds the context for runs started without one (the LangGraph server's runs)."""


@dataclass
class ClientContext:
    """The context schema of a graph whose services are built server-side: a client's run
    carries no services (they are not JSON), so the server coerces its context to this."""


def _observed_node(
    functions: NodeFunctions,
    name: str,
    sink: EdgeSink | None,
    default_context: ContextFactory | None,
) -> Any:
    """A graph node that runs `name` and hands the transition to the sink."""

    def node(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
        if not isinstance(runtime.context, MeshContext):
            if default_context is None:
                raise RuntimeError(f"{name}: the run has no context (pass context=MeshContext)")
            runtime = runtime.override(context=default_context())
        update, record = run_step(functions, name, state, runtime)
        if sink is not None:
            sink.on_step(record)
        return update

    node.__name__ = name
    return node


def build_graph(
    functions: NodeFunctions,
    edge_sink: EdgeSink | None = None,
    default_context: ContextFactory | None = None,
) -> StateGraph[MeshState, MeshContext, MeshState, MeshState]:
    """The uncompiled graph; every transition is handed to `edge_sink` when one is given. With
    `default_context`, runs bring no services (a server's clients): it builds them."""
    schema: type[Any] = MeshContext if default_context is None else ClientContext
    builder: StateGraph[MeshState, MeshContext, MeshState, MeshState] = StateGraph(
        MeshState, context_schema=schema
    )
    for name, route in ROUTES.items():
        builder.add_node(name, _observed_node(functions, name, edge_sink, default_context))
        if isinstance(route.then, str):
            builder.add_edge(name, route.then)
        else:
            builder.add_conditional_edges(name, route.then)
    builder.add_edge(START, ENTRY)
    return builder


def compile_mesh(
    functions: NodeFunctions,
    checkpointer: BaseCheckpointSaver | None = None,
    edge_sink: EdgeSink | None = None,
    default_context: ContextFactory | None = None,
) -> MeshGraph:
    """The compiled, named graph."""
    return build_graph(functions, edge_sink, default_context).compile(
        checkpointer=checkpointer, name=GRAPH_NAME
    )
