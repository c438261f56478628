"""KafkaEdgeSink against the real embedded broker: topics, keys, headers, telemetry, failures."""

from __future__ import annotations

import time

import pytest
from conftest import Mesh
from kafka_stand_in import stand_in_step, stand_in_task

from foundation.settings import Settings
from graph.edges import EdgeSink, StepRecord
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState
from graph.topics import AI_REPORTS, AI_REQUESTS, AI_SOLUTIONS, AI_TELEMETRY, AI_TOPIC
from graph.wire import ReportMessage, SolutionMessage, TaskMessage, TaskRequest, TelemetryEvent
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.publisher import PublishError

pytestmark = pytest.mark.broker


def _steps(statement: str = "add FAIL_FIRST") -> list[StepRecord]:
    state = MeshState(task=stand_in_task(statement), status="solving")
    records, node = [], "consumer"
    while node != "__end__":
        _, record = stand_in_step(node, state)
        records.append(record)
        state, node = record.state, record.next_node
    return records


def test_sink_is_an_edge_sink(mesh: Mesh) -> None:
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        edge_sink: EdgeSink = sink  # the graph's protocol
        assert edge_sink is sink


def test_on_step_publishes_transition_and_telemetry(mesh: Mesh) -> None:
    steps = _steps()
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        for step in steps:
            sink.on_step(step)
    task_id = steps[0].state.task.task_id  # type: ignore[union-attr]
    run_id = steps[0].state.run_id

    solutions = mesh.read(AI_SOLUTIONS, 2)
    assert [type(r.message) for r in solutions] == [SolutionMessage, SolutionMessage]
    assert sorted(r.headers["attempt"] for r in solutions) == ["1", "2"]
    for record in solutions:
        assert record.key == task_id
        assert record.headers["run_id"] == run_id
        assert record.headers["schema_version"] == "1"
        assert record.headers["source"] == "consumer"
    # one task's messages share a key, so a partition, so their order
    assert len({r.partition for r in solutions}) == 1

    retry = mesh.read(AI_TOPIC, 1)[0]
    assert isinstance(retry.message, TaskMessage) and retry.message.retry
    assert retry.message.state == steps[1].state  # the full state travels

    report = mesh.read(AI_REPORTS, 1)[0]
    assert isinstance(report.message, ReportMessage) and report.message.status == "done"

    telemetry = mesh.read(AI_TELEMETRY, len(steps))
    events = [r.message for r in telemetry]
    assert all(isinstance(e, TelemetryEvent) for e in events)
    assert sorted(e.agent for e in events if isinstance(e, TelemetryEvent)) == sorted(
        s.node for s in steps
    )


def test_feeding_requests_and_tasks(mesh: Mesh) -> None:
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        request = sink.feed_request(task_index=5)
        task = sink.feed_task(stand_in_task("fed directly"))
    got_request = mesh.read(AI_REQUESTS, 1)[0]
    assert isinstance(got_request.message, TaskRequest)
    assert got_request.message.task_index == 5 and got_request.key == request.run_id
    got_task = mesh.read(AI_TOPIC, 1)[0]
    assert isinstance(got_task.message, TaskMessage)
    assert got_task.message.statement == "fed directly" and got_task.key == task.task_id
    assert got_task.headers["source"] == "feed"


def test_broker_outage_raises_after_bounded_retries() -> None:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        settings = Settings(kafka_bootstrap=bootstrap)
        sink = KafkaEdgeSink(settings, delivery_timeout_s=1.0, max_tries=2, retry_backoff_s=0.1)
        sink.on_step(_steps()[0])  # delivered while the broker is up
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        sink.on_step(_steps()[0])
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"Kafka at {bootstrap} did not confirm 2 message(s) to ")
    assert "after 2 tries: Local: Message timed out" in message and "\n" not in message
    assert elapsed < 2 * (1.0 + 2.0) + 1  # bounded: tries x (delivery timeout + flush grace)
    sink.close()
