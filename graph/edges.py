"""What the graph hands to an edge sink after each node step (the Kafka publisher is one)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from graph.state import MeshState


class StepRecord(BaseModel):
    """One node step: who ran, where the state goes next, and what it cost."""

    node: str
    next_node: str
    state: MeshState
    latency_ms: float
    tokens_used: int = 0
    memory_hits: int = 0


class EdgeSink(Protocol):
    """Receives every transition; implementations publish it (Kafka) or record it (tests)."""

    def on_step(self, step: StepRecord) -> None:
        """Handle one step. Must not lose it: raise if it cannot be delivered."""
        ...


class FanOutSink:
    """An EdgeSink handing every step to several sinks in order (publisher, recorder, ...)."""

    def __init__(self, *sinks: EdgeSink) -> None:
        self.sinks = sinks

    def on_step(self, step: StepRecord) -> None:
        for sink in self.sinks:
            sink.on_step(step)
