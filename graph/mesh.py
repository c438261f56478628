"""The module-level graph served by `langgraph dev` / LangGraph server / Studio (langgraph.json).

Compiled WITHOUT a checkpointer: the server injects its own. Transitions are published to Kafka
when AIMESH_KAFKA_BOOTSTRAP is set.
"""

from graph.runner import compile_mesh
from kafka_edges.publisher import ConfiguredSink

graph = compile_mesh(edge_sink=ConfiguredSink())
