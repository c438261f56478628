"""The module-level graph served by `langgraph dev` / LangGraph server / Studio (langgraph.json).

Compiled WITHOUT a checkpointer: the server injects its own.
"""

from graph.runner import compile_mesh

graph = compile_mesh()
