"""The same graph two ways: in-process vs Kafka workers, real nodes, scripted LLM (test double)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from conftest import Mesh

from app.services import build_context
from graph.context import MeshContext
from graph.edges import StepRecord
from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, WorkerOptions
from graph.routing import NODES
from graph.state import MeshState
from graph.step import bind_step
from graph.topics import AI_REPORTS, AI_TELEMETRY
from graph.wire import ReportMessage, TelemetryEvent
from nodes import NODE_FUNCTIONS

pytestmark = pytest.mark.broker

TASKS = 4


class RecordingSink:
    """An EdgeSink that keeps the steps (for the in-process run)."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []

    def on_step(self, step: StepRecord) -> None:
        self.steps.append(step)


@pytest.fixture
def services(mesh: Mesh) -> MeshContext:
    return build_context(mesh.settings)


def _in_process(services: Any) -> dict[int, tuple[list[tuple[str, str]], MeshState]]:
    from graph.builder import compile_mesh

    results = {}
    for index in range(TASKS):
        sink = RecordingSink()
        graph = compile_mesh(NODE_FUNCTIONS, edge_sink=sink)
        final = MeshState.model_validate(
            graph.invoke(MeshState(task_index=index), context=services)
        )
        results[index] = ([(s.node, s.next_node) for s in sink.steps], final)
    return results


def test_kafka_workers_make_the_same_transitions_as_the_in_process_graph(
    mesh: Mesh, services: Any
) -> None:
    expected = _in_process(services)
    assert any(len(final.attempts) > 1 for _, final in expected.values())  # the retry edge too

    with MeshWorkers(
        NODES,
        mesh.settings,
        bind_step(NODE_FUNCTIONS, services),
        WorkerOptions(topic_prefix=mesh.prefix),
    ) as workers:
        assert workers.wait_joined(30)
        with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
            runs = {sink.feed_request(MeshState(task_index=i)).run_id: i for i in range(TASKS)}
        reports = mesh.read(AI_REPORTS, TASKS, timeout_s=120)
        dead = sum(w.stats.dead_lettered for w in workers.workers)
    assert dead == 0
    assert {r.message.run_id for r in reports if r.message} == set(runs)  # type: ignore[union-attr]

    telemetry = mesh.read(
        AI_TELEMETRY, sum(len(steps) for steps, _ in expected.values()), timeout_s=20
    )
    by_run: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in telemetry:  # one task's events share a key, so a partition, so their order
        event = record.message
        assert isinstance(event, TelemetryEvent)
        by_run[event.run_id].append((event.agent, event.next_node or ""))

    for record in reports:
        report = record.message
        assert isinstance(report, ReportMessage)
        index = runs[report.run_id]
        steps, final = expected[index]
        assert by_run[report.run_id] == steps, f"task {index}"
        got = report.state
        assert got.task is not None and final.task is not None
        assert got.task.statement == final.task.statement
        assert (got.status, got.passed, len(got.attempts)) == (
            final.status,
            final.passed,
            len(final.attempts),
        )
        assert got.review is not None and final.review is not None
        assert got.review.reward == pytest.approx(final.review.reward)
