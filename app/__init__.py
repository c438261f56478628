"""The application layer: the CLI, the LangGraph server app, the distributed launcher and the
HumanEval evaluation; it wires every other layer together, and nothing imports it."""
