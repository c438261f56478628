"""NodeWorker against the real embedded broker, with the stand-in node step (a test double)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from conftest import Mesh
from kafka_stand_in import stand_in_step, stand_in_task

from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, NodeWorker, WorkerError, WorkerOptions
from graph.routing import NODES
from graph.state import MeshState
from graph.topics import AI_DEAD_LETTER, AI_REPORTS, AI_SOLUTIONS, AI_TELEMETRY, AI_TOPIC
from graph.wire import ReportMessage, SolutionMessage, TaskMessage, TelemetryEvent
from kafka_edges.codec import encode
from kafka_edges.config import with_logger
from kafka_edges.dead_letters import DeadLetter
from kafka_edges.delivery_policy import RetryPolicy
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.reader import Record

pytestmark = pytest.mark.broker


def _worker(mesh: Mesh, role: str, **options: Any) -> NodeWorker:
    return NodeWorker(
        role, mesh.settings, stand_in_step, WorkerOptions(topic_prefix=mesh.prefix, **options)
    )


def _raw_produce(
    mesh: Mesh, topic: str, value: bytes, key: bytes = b"k", headers: list | None = None
) -> None:
    producer = Producer(with_logger({"bootstrap.servers": mesh.bootstrap}))
    producer.produce(mesh.topic(topic), value=value, key=key, headers=headers or [])
    assert producer.flush(10) == 0


def test_full_mesh_end_to_end_with_a_retry(mesh: Mesh) -> None:
    """Feed a request; five role workers carry it through the retry edge to a report."""
    with MeshWorkers(
        NODES, mesh.settings, stand_in_step, WorkerOptions(topic_prefix=mesh.prefix)
    ) as workers:
        assert workers.wait_joined(30)
        state = MeshState(task=stand_in_task("add FAIL_FIRST"), task_index=1)
        with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
            request = sink.feed_request(state)
        reports = mesh.read(AI_REPORTS, 1, timeout_s=30)
    assert len(reports) == 1
    report = reports[0].message
    assert isinstance(report, ReportMessage)
    assert report.run_id == request.run_id and report.status == "done" and report.reward == 0.9
    final = report.state
    assert [a.number for a in final.attempts] == [1, 2]
    assert final.attempts[0].execution and not final.attempts[0].execution.passed
    assert final.attempts[1].execution and final.attempts[1].execution.passed
    assert final.tokens_used == 7 + 7 + 3 and final.memory_hits == 2

    telemetry = mesh.read(AI_TELEMETRY, 7, timeout_s=10)
    agents = [r.message.agent for r in telemetry if isinstance(r.message, TelemetryEvent)]
    assert sorted(agents) == sorted(
        ["producer", "consumer", "sandbox", "consumer", "sandbox", "reviewer", "supervisor"]
    )
    stats = {w.role: w.stats.snapshot() for w in workers.workers}
    assert stats["consumer"]["processed"] == 2 and stats["sandbox"]["processed"] == 2
    assert all(s["dead_lettered"] == 0 for s in stats.values())
    # each published message names the worker member that made it
    assert all(r.headers.get("worker", "").endswith(":0") for r in telemetry)


def _dead_letters(mesh: Mesh, count: int) -> list[DeadLetter]:
    records = mesh.read(AI_DEAD_LETTER, count, timeout_s=20)
    return [r.message for r in records if isinstance(r.message, DeadLetter)]


def test_malformed_and_schema_invalid_go_to_dead_letter_and_the_worker_goes_on(mesh: Mesh) -> None:
    _raw_produce(mesh, AI_TOPIC, b'{"schema_version": 1, "task_id": oops', key=b"bad-json")
    _raw_produce(
        mesh,
        AI_TOPIC,
        json.dumps({"schema_version": 1, "task_id": "t"}).encode(),
        key=b"bad-schema",
    )
    _raw_produce(mesh, AI_TOPIC, json.dumps({"schema_version": 7}).encode(), key=b"future")
    _raw_produce(mesh, AI_TOPIC, b"\xff\xfe\xfd", key=b"binary", headers=[("run_id", b"r-bin")])
    good = TaskMessage.from_state(MeshState(task=stand_in_task("fine")), source="feed")
    wire = encode(good)
    _raw_produce(mesh, AI_TOPIC, wire.value, key=wire.key, headers=wire.headers)

    with _worker(mesh, "consumer") as worker:
        dead = _dead_letters(mesh, 4)
        solutions = mesh.read(AI_SOLUTIONS, 1)
    by_key = {d.key: d for d in dead}
    assert by_key["bad-json"].reason == "malformed_json"
    assert "invalid JSON" in by_key["bad-json"].error
    assert by_key["bad-json"].raw_value == '{"schema_version": 1, "task_id": oops'
    assert by_key["bad-schema"].reason == "schema_invalid"
    assert "not a valid TaskMessage" in by_key["bad-schema"].error
    assert by_key["future"].reason == "unsupported_schema_version"
    assert by_key["binary"].reason == "not_utf8" and by_key["binary"].raw_bytes() == b"\xff\xfe\xfd"
    assert by_key["binary"].run_id == "r-bin"
    for letter in dead:
        assert letter.source_topic == mesh.topic(AI_TOPIC) and letter.role == "consumer"
        assert letter.partition is not None and letter.offset is not None
    # the good message behind them was handled
    assert len(solutions) == 1 and isinstance(solutions[0].message, SolutionMessage)
    snap = worker.stats.snapshot()
    assert snap["dead_lettered"] == 4 and snap["processed"] == 1


def test_poison_message_is_dead_lettered_after_bounded_tries(mesh: Mesh) -> None:
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        poison = sink.feed_task(stand_in_task("POISON pill"))
        sink.feed_task(stand_in_task("after the poison"))
    with _worker(mesh, "consumer", retry=RetryPolicy(max_tries=3, backoff_s=0.05)) as worker:
        dead = _dead_letters(mesh, 1)
        solutions = mesh.read(AI_SOLUTIONS, 1)
    assert len(dead) == 1
    letter = dead[0]
    assert letter.reason == "node_error"
    assert letter.error.startswith(
        "StandInPoison: stand-in consumer cannot handle a POISON task (after 3 tries)"
    )
    assert (letter.task_id, letter.run_id, letter.attempt) == (poison.task_id, poison.run_id, 0)
    assert worker.stats.node_errors == 3
    assert isinstance(solutions[0].message, SolutionMessage)
    assert solutions[0].message.state.task.statement == "after the poison"  # type: ignore[union-attr]


def test_duplicates_are_skipped(mesh: Mesh) -> None:
    message = TaskMessage.from_state(MeshState(task=stand_in_task("twice")), source="feed")
    wire = encode(message)
    for _ in range(2):  # e.g. an upstream worker died after publishing, before committing
        _raw_produce(mesh, AI_TOPIC, wire.value, key=wire.key, headers=wire.headers)
    with _worker(mesh, "consumer") as worker:
        deadline = time.monotonic() + 20
        while worker.stats.consumed < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert worker.stats.processed == 1 and worker.stats.duplicates == 1
    assert len(mesh.read(AI_SOLUTIONS, timeout_s=3, idle_s=1.5)) == 1


def test_commits_after_publishing_so_a_restart_resumes_after_handled_work(mesh: Mesh) -> None:
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        for i in range(3):
            sink.feed_task(stand_in_task(f"task {i}"))
    with _worker(mesh, "consumer") as worker:
        deadline = time.monotonic() + 20
        while worker.stats.processed < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert worker.stats.processed == 3
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        sink.feed_task(stand_in_task("task 3"))
    # a new worker process (fresh duplicate record) in the same group only sees the new task
    with _worker(mesh, "consumer") as second:
        assert second.wait_joined(20)
        deadline = time.monotonic() + 20
        while second.stats.processed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    assert second.stats.consumed == 1 and second.stats.processed == 1
    statements = sorted(
        r.message.state.task.statement  # type: ignore[union-attr]
        for r in mesh.read(AI_SOLUTIONS, 4)
        if isinstance(r.message, SolutionMessage)
    )
    assert statements == ["task 0", "task 1", "task 2", "task 3"]


def test_concurrency_members_share_the_partitions(mesh: Mesh) -> None:
    with _worker(mesh, "consumer", concurrency=2) as worker:
        assert worker.wait_joined(20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            parts = worker.stats.snapshot()["assignments"]
            if len(parts) == 2 and all(parts.values()):
                break
            time.sleep(0.05)
        assigned = worker.stats.snapshot()["assignments"]
        with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
            for i in range(6):
                sink.feed_task(stand_in_task(f"task {i}"))
        solutions = mesh.read(AI_SOLUTIONS, 6)
    assert len(solutions) == 6
    assert sorted(p for parts in assigned.values() for p in parts) == [
        f"{mesh.topic(AI_TOPIC)}[0]",
        f"{mesh.topic(AI_TOPIC)}[1]",
    ]
    assert {r.headers["worker"].rsplit(":", 1)[1] for r in solutions} <= {"0", "1"}


def test_graceful_stop_finishes_the_current_message(mesh: Mesh) -> None:
    worker = _worker(mesh, "consumer").start()
    assert worker.wait_joined(20)
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        sink.feed_task(stand_in_task("HOLD=1.0 slow one"))
    deadline = time.monotonic() + 10
    while worker.stats.consumed < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()  # while the node is running
    assert worker.join(10)
    assert worker.stats.processed == 1  # finished, published, committed
    assert len(mesh.read(AI_SOLUTIONS, 1)) == 1


def test_unknown_role_and_missing_nodes_are_readable(mesh: Mesh) -> None:
    with pytest.raises(WorkerError, match="unknown role 'chef'"):
        NodeWorker("chef", mesh.settings, stand_in_step)


def _first(records: list[Record]) -> Record:
    assert records
    return records[0]


def test_cli_feed_waits_for_the_reports(tmp_path: Path) -> None:
    """`feed --wait` against stand-in workers (own broker: the CLI uses unprefixed topics)."""
    import os
    import subprocess
    import sys

    from foundation.settings import Settings
    from kafka_edges.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        settings = Settings(
            kafka_bootstrap=broker.bootstrap,
            kafka_config={"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"},
        )
        with MeshWorkers(
            NODES,
            settings,
            stand_in_step,
            WorkerOptions(partitions=2),
            ledger=DeliveryLedger(":memory:"),
        ) as workers:
            assert workers.wait_joined(30)
            done = subprocess.run(
                [sys.executable, "-m", "app.cli.kafka", "feed", "--count", "2", "--wait", "30"],
                capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
                env={**os.environ, "AIMESH_KAFKA_BOOTSTRAP": broker.bootstrap,
                     "AIMESH_DATA_DIR": str(tmp_path)},
            )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("sent 2 task(s) to the producer workers: ")
    assert len(lines) == 3
    assert all(": done task=" in line and "verdict=ok reward=0.9" in line for line in lines[1:])


def test_workers_skip_transitions_published_by_the_in_process_graph(mesh: Mesh) -> None:
    """The in-process graph's edge records are for observers; workers must not redo the task."""
    _, record = stand_in_step("producer", MeshState(task=stand_in_task("run in-process")))
    assert record.next_node == "consumer"
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as graph_sink:  # origin in_process
        graph_sink.on_step(record)
        graph_sink.feed_task(stand_in_task("fed to the workers"))
    with _worker(mesh, "consumer") as worker:
        solutions = mesh.read(AI_SOLUTIONS, 1)
        deadline = time.monotonic() + 10
        while worker.stats.consumed < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert worker.stats.observed == 1 and worker.stats.processed == 1
    assert solutions[0].message.state.task.statement == "fed to the workers"  # type: ignore[union-attr]
    assert solutions[0].headers["origin"] == "worker"
