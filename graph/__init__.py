"""The graph core: the state, the one routing table, the builder, the step runner, the batch
runner and checkpointer, and the graph's transitions as wire messages."""
