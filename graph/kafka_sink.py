"""KafkaEdgeSink: the graph's EdgeSink on Kafka: every transition (and its telemetry) published,
confirmed or raised; and the feeders that put new work on the mesh's topics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foundation.settings import Settings
from graph.edges import StepRecord
from graph.state import MeshState, Task
from graph.wire import (
    EdgeMessage,
    Origin,
    ServerTaskMessage,
    TaskMessage,
    TaskRequest,
    TelemetryEvent,
    message_for_step,
)
from kafka_edges.codec import WireModel, encode
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.publisher import KafkaPublisher


class KafkaEdgeSink(KafkaPublisher):
    """An EdgeSink that publishes each step's transition and a TelemetryEvent, confirmed.

    `origin="in_process"` (the default, for `compile_mesh(edge_sink=...)`) marks the
    transitions as a record of a run the in-process graph is doing itself: node workers on
    the same topics skip them. NodeWorkers publish their transitions with `origin="worker"`
    (`graph.node_worker.MeshHandler`).

    With a `ledger`, what it feeds is recorded as its run's first record in flight, so
    `aimesh recover` can re-publish it if a memory-only broker loses it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        origin: Origin = "in_process",
        telemetry: bool = True,
        ledger: DeliveryLedger | None = None,
        **options: Any,
    ) -> None:
        super().__init__(settings, **options)
        self.origin = origin
        self.telemetry = telemetry
        self.ledger = ledger

    def on_step(self, step: StepRecord) -> None:
        """Publish the step's transition and its telemetry; raise PublishError if unconfirmed."""
        self.publish_step(step)

    def publish_step(
        self, step: StepRecord, extra_headers: Mapping[str, str] | None = None
    ) -> EdgeMessage:
        """`on_step` that also returns the transition message it published."""
        message = message_for_step(step, origin=self.origin)
        batch: list[WireModel] = [message]
        if self.telemetry:
            batch.append(TelemetryEvent.from_step(step))
        self.publish_many(batch, extra_headers=extra_headers)
        return message

    # ------------------------------------------------------------------ feeding

    def feed_request(self, state: MeshState | None = None, **state_fields: Any) -> TaskRequest:
        """Ask the producer workers for a task (`ai_requests`); returns the confirmed request."""
        if state is None:
            state = MeshState(**state_fields)
        request = TaskRequest.from_state(state, source="feed")
        self._feed(request)
        return request

    def feed_server_task(self, state: MeshState) -> ServerTaskMessage:
        """Put a ready task on the LangGraph server's intake (`ai_server_tasks`)."""
        if state.task is None:
            raise ValueError("feed_server_task needs a state with a task")
        message = ServerTaskMessage.from_state(state, source="feed")
        self.publish(message)
        return message

    def feed_task(self, task: Task | MeshState, **state_fields: Any) -> TaskMessage:
        """Put a ready task straight on `ai_topic` for the consumer workers (skips the producer)."""
        state = (
            task
            if isinstance(task, MeshState)
            else MeshState(task=task, status="solving", **state_fields)
        )
        if state.task is None:
            raise ValueError("feed_task needs a state with a task")
        message = TaskMessage.from_state(state, source="feed")
        self._feed(message)
        return message

    def _feed(self, message: EdgeMessage) -> None:
        self.publish(message)
        if self.ledger is not None:
            self.ledger.record_in_flight(message.run_id, self.topic_of(message), encode(message))
