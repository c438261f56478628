"""The module-level graph served by `langgraph dev` / LangGraph server / Studio (langgraph.json).

Compiled WITHOUT a checkpointer: the server injects its own. The settings are read once, here;
the services (LLM, sandbox, memory, prompt registry) are built at the first step of the first
run and shared by every run of this server, whose runs are recorded as rollouts (source
"server") in the learning store. Transitions are published to Kafka when
AIMESH_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import functools
import threading

from app.services import build_context, recorded
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.edges import FanOutSink, StepRecord
from graph.kafka_sink import KafkaEdgeSink
from learning.rollouts import RolloutRecorder
from nodes import NODE_FUNCTIONS

SETTINGS = Settings.load()


class LazyKafkaSink:
    """An EdgeSink that publishes to the configured broker, connecting on the first step;
    without a configured broker the deployment has no Kafka and steps are not published."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._sink: KafkaEdgeSink | None = None

    def on_step(self, step: StepRecord) -> None:
        if not self.settings.kafka_bootstrap:
            return
        with self._lock:
            if self._sink is None:
                self._sink = KafkaEdgeSink(self.settings)
        self._sink.on_step(step)


@functools.cache
def _services() -> tuple[MeshContext, RolloutRecorder]:
    """The services of this server's runs and their rollout recorder, built once on first use."""
    return recorded(build_context(SETTINGS), source="server")


def server_context() -> MeshContext:
    """The context every run of this server uses (LLM calls traced into its rollouts)."""
    return _services()[0]


class RolloutSink:
    """Hands every step to the server's rollout recorder."""

    def on_step(self, step: StepRecord) -> None:
        _services()[1].on_step(step)


graph = compile_mesh(
    NODE_FUNCTIONS,
    edge_sink=FanOutSink(LazyKafkaSink(SETTINGS), RolloutSink()),
    default_context=server_context,
)
