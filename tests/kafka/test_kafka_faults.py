"""Fault injection against the real embedded broker (loopback only, each test bounded):
a broker killed and restarted mid-stream, 5 MB and malformed records, an infrastructure outage
at a node, a worker restarted over records it had already handled; with the shared state in
Postgres (a throw-away cluster), the database restarted or away for 20 s mid-run and a whole
host killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from conftest import TEST_KAFKA_CONFIG, Mesh
from kafka_stand_in import stand_in_step, stand_in_task
from langchain_core.runnables import RunnableConfig

from app.distributed import await_reports
from dashboard.aggregates import Aggregator
from dashboard.consumer import TelemetryReader
from foundation.postgres_server import PostgresMissing, ThrowAwayPostgres
from foundation.settings import Settings
from graph.edges import StepRecord
from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, NodeWorker, WorkerOptions
from graph.routing import NODES
from graph.state import MeshState
from graph.topics import (
    AI_DEAD_LETTER,
    AI_REPORTS,
    AI_REQUESTS,
    AI_SOLUTIONS,
    AI_TOPIC,
    ALL_TOPICS,
)
from graph.wire import MODEL_BY_TOPIC, ReportMessage, SolutionMessage, TaskMessage, TaskRequest
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.codec import encode
from kafka_edges.config import common_config, with_logger
from kafka_edges.dead_letters import DeadLetter
from kafka_edges.delivery_policy import DeadLetterPolicy, RetryPolicy
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.publisher import KafkaPublisher, MessageTooLargeError
from kafka_edges.reader import TopicReader
from kafka_edges.recovery import republish_in_flight
from llm.chat import LLMUnavailableError
from memory.errors import MemoryUnavailableError
from sandbox import SandboxError

pytestmark = pytest.mark.broker

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

Step = Callable[..., tuple[dict[str, Any], StepRecord]]


class CountingStep:
    """The stand-in step, counting each (node, run, attempt) it runs: the side effects."""

    def __init__(self, inner: Step = stand_in_step) -> None:
        self.inner = inner
        self.calls: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()

    def __call__(
        self, node: str, state: MeshState, config: RunnableConfig | None = None
    ) -> tuple[dict[str, Any], StepRecord]:
        with self._lock:
            self.calls[(node, state.run_id, len(state.attempts))] += 1
        return self.inner(node, state, config)


class TopicCollector:
    """Reads a topic in the background, across broker restarts (a new group after each)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.values: list[bytes] = []
        self._stop = threading.Event()
        self._generation = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def restart(self) -> None:
        """A restarted memory-only broker forgot the group and the offsets: start over."""
        self._generation += 1

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            with_logger(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"collector-{uuid.uuid4().hex[:6]}",
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 10,
                    **TEST_KAFKA_CONFIG,
                }
            )
        )
        consumer.subscribe([self.topic])
        return consumer

    def _run(self) -> None:
        generation = self._generation
        consumer = self._consumer()
        while not self._stop.is_set():
            if generation != self._generation:
                consumer.close()
                generation = self._generation
                consumer = self._consumer()
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None and msg.value():
                self.values.append(msg.value())
        consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _create_topics(settings: Settings) -> None:
    admin = AdminClient(with_logger(common_config(settings)))
    ensure_topics(admin, ALL_TOPICS, 2)


@pytest.mark.parametrize("recovery", ["command", "automatic"])
def test_broker_killed_and_restarted_mid_stream_every_task_reported_once(
    tmp_path: Path, recovery: str
) -> None:
    """SIGKILL the (memory-only) broker with tasks in flight, restart it on the same port,
    re-publish from the ledger (`aimesh recover`'s function, or the workers' own watch, which
    sees the topics' ids change): N fed = N reported, no step run twice."""
    tasks = 12
    broker = EmbeddedBroker().start()
    port = broker.port
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_config=dict(TEST_KAFKA_CONFIG),
        kafka_group_prefix=f"restart-{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path,
    )
    _create_topics(settings)
    ledger = DeliveryLedger.for_settings(settings)
    step = CountingStep()
    options = WorkerOptions(partitions=2, publisher_options={"delivery_timeout_s": 3.0})
    collector = TopicCollector(broker.bootstrap, AI_REPORTS)
    try:
        automatic = recovery == "automatic"
        with MeshWorkers(
            NODES, settings, step, options, ledger=ledger, recover_lost_runs=automatic
        ) as workers:
            assert workers.wait_joined(30)
            with KafkaEdgeSink(settings, ledger=ledger) as sink:
                runs = {
                    sink.feed_request(
                        MeshState(task=stand_in_task(f"HOLD=0.25 task {i}"), task_index=i)
                    ).run_id
                    for i in range(tasks)
                }
            assert _wait(lambda: len(collector.values) >= 3, 30), "no reports before the kill"
            os.kill(broker.pid or 0, signal.SIGKILL)
            killed_at = time.monotonic()
            broker.stop()
            reported_before = len(collector.values)

            broker = EmbeddedBroker(port=port).start()  # same port, at once
            restarted_in = time.monotonic() - killed_at
            _create_topics(settings)
            collector.restart()
            # the members rejoin the new broker's groups (they notice within the 2 s session;
            # 4 s is a margin), then the coordinator re-publishes what the dead broker held
            if automatic:
                republished: int | str = "the watch"  # about 10 s after the restart
            else:
                time.sleep(4.0)
                republished = republish_in_flight(settings, ledger)
            assert _wait(lambda: len(collector.values) >= tasks, 45), (
                f"{len(collector.values)} of {tasks} reported; stats "
                f"{ {w.role: w.stats.snapshot() for w in workers.workers} }"
            )
            recovered_in = time.monotonic() - killed_at
            time.sleep(1.0)  # any duplicate would arrive now
            stats = {w.role: w.stats.snapshot() for w in workers.workers}
            if automatic:
                assert workers.recovery is not None and workers.recovery.watch.resets == 1
    finally:
        collector.close()
        broker.stop()
        ledger.close()
    reported = Counter(json.loads(v)["run_id"] for v in collector.values)
    totals = {
        name: sum(s[name] for s in stats.values())
        for name in ("processed", "duplicates", "producer_restarts", "commit_failures")
    }
    print(
        f"{recovery}: broker restarted in {restarted_in:.1f} s; {reported_before} reported before the kill, "
        f"{republished} re-published (by {recovery}), {len(reported)} of {tasks} reported "
        f"{recovered_in:.1f} s after the kill; totals {totals}"
    )
    assert set(reported) == runs and all(n == 1 for n in reported.values()), reported
    assert restarted_in < 5
    assert all(n == 1 for n in step.calls.values()), [k for k, n in step.calls.items() if n > 1]
    assert sum(s["dead_lettered"] for s in stats.values()) == 0


def test_a_reader_waiting_through_a_broker_reset_sees_every_report(tmp_path: Path) -> None:
    """What `aimesh feed --wait` and `run --distributed` wait with: 20 fed, the broker SIGKILLed
    after 5 reports and restarted on the same port. Every report is seen: the readers start the
    topic's new incarnation from its earliest offset, and a report the dead broker had confirmed
    comes from the delivery ledger."""
    tasks = 20
    broker = EmbeddedBroker().start()
    port = broker.port
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_config=dict(TEST_KAFKA_CONFIG),
        kafka_group_prefix=f"reader-{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path,
    )
    _create_topics(settings)
    ledger = DeliveryLedger(settings.delivery_ledger_db)
    options = WorkerOptions(partitions=2, publisher_options={"delivery_timeout_s": 3.0})
    seen: list[str] = []
    shown: list[str] = []  # what a plain TopicReader (`aimesh tail`, the dashboard's view) shows
    stop = threading.Event()

    def tail(reader: TopicReader) -> None:
        while not stop.is_set():
            record = reader.poll(0.1)
            if record is not None and isinstance(record.message, ReportMessage):
                shown.append(record.message.run_id)

    try:
        with (
            MeshWorkers(
                NODES, settings, CountingStep(), options, ledger=ledger, recover_lost_runs=True
            ) as workers,
            TopicReader(
                AI_REPORTS, settings, models=MODEL_BY_TOPIC, from_beginning=False
            ) as reader,
            ThreadPoolExecutor(2) as pool,
        ):
            assert workers.wait_joined(30)
            showing = pool.submit(tail, reader)
            with KafkaEdgeSink(settings, ledger=ledger) as sink:
                runs = {
                    sink.feed_request(
                        MeshState(task=stand_in_task(f"HOLD=0.2 task {i}"), task_index=i)
                    ).run_id
                    for i in range(tasks)
                }
            waiting = pool.submit(
                await_reports, settings, runs, lambda m: seen.append(m.run_id), timeout_s=90
            )
            assert _wait(lambda: len(seen) >= 5, 30), "no reports before the kill"
            os.kill(broker.pid or 0, signal.SIGKILL)
            broker.stop()
            seen_before = len(seen)
            broker = EmbeddedBroker(port=port).start()
            _create_topics(settings)
            missing = waiting.result(timeout=100)
            time.sleep(1.0)  # the tail's last reports
            stop.set()
            showing.result(timeout=10)
            resets = reader.resets
    finally:
        stop.set()
        broker.stop()
        ledger.close()
    print(
        f"{seen_before} reports seen before the kill, {len(seen)} of {tasks} in all; the tail "
        f"showed {len(set(shown))} ({resets} reset followed)"
    )
    assert not missing and sorted(seen) == sorted(runs)
    assert resets == 1
    # A reader that kept its old positions skipped the new log's first records (it showed 15).
    assert set(shown) == runs


def test_the_dashboard_reads_a_topics_new_incarnation_after_a_broker_reset(
    tmp_path: Path,
) -> None:
    """3 reports, the broker SIGKILLed and restarted on the same port, 5 reports on the new
    broker at once: the dashboard counts 8 (with its old positions it would start the new log
    at offset 3 of its partition and skip what lies before)."""
    broker = EmbeddedBroker().start()
    port = broker.port
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, kafka_config=dict(TEST_KAFKA_CONFIG), data_dir=tmp_path
    )
    _create_topics(settings)
    aggregator = Aggregator()
    reader = TelemetryReader(
        broker.bootstrap, aggregator, kafka_config=TEST_KAFKA_CONFIG, topics=[AI_REPORTS]
    )

    def publish(first: int, count: int) -> None:
        producer = Producer(with_logger(common_config(settings)))
        for i in range(first, first + count):
            state = MeshState(run_id=f"run-{i}", task=stand_in_task(f"task {i}"), status="done")
            report = ReportMessage.from_state(state, source="supervisor")
            producer.produce(AI_REPORTS, encode(report).value, key=b"k")  # one partition
        assert producer.flush(10) == 0

    def reports() -> int:
        return int(aggregator.snapshot(max_age_s=0)["totals"]["reports"])

    reader.start()
    try:
        publish(0, 3)
        assert _wait(lambda: reports() == 3, 20)
        os.kill(broker.pid or 0, signal.SIGKILL)
        broker.stop()
        broker = EmbeddedBroker(port=port).start()
        _create_topics(settings)
        publish(3, 5)
        assert _wait(lambda: reports() == 8, 30), f"{reports()} of 8 reports counted"
        assert reader.resets == 1
    finally:
        reader.stop()
        broker.stop()


def test_a_run_the_broker_lost_is_republished_by_the_sweep_and_reported_once(
    tmp_path: Path,
) -> None:
    """A request recorded in the ledger but never on the broker (as if the broker lost it, or a
    group committed past it: no watch sees either) is re-published by the workers' periodic
    sweep once it has not moved for `kafka_stale_run_s`, and reported once; a step running
    longer than that holds a lease on its run and is not taken for lost."""
    broker = EmbeddedBroker().start()
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_config=dict(TEST_KAFKA_CONFIG),
        kafka_group_prefix=f"sweep-{uuid.uuid4().hex[:6]}",
        kafka_stale_run_s=1.5,
        data_dir=tmp_path,
    )
    _create_topics(settings)
    ledger = DeliveryLedger.for_settings(settings)
    step = CountingStep()
    collector = TopicCollector(broker.bootstrap, AI_REPORTS)
    lost = TaskRequest.from_state(MeshState(task=stand_in_task("lost"), task_index=0), "feed")
    try:
        with MeshWorkers(
            NODES, settings, step, WorkerOptions(partitions=2), ledger=ledger,
            recover_lost_runs=True,
        ) as workers:  # fmt: skip
            assert workers.wait_joined(30)
            ledger.record_in_flight(lost.run_id, AI_REQUESTS, encode(lost))  # never published
            assert _wait(lambda: len(collector.values) >= 1, 30), "the lost run never reported"
            assert workers.recovery is not None
            sweeper = workers.recovery.sweeper
            republished_for_the_lost_run = sweeper.republished
            with KafkaEdgeSink(settings, ledger=ledger, origin="feed") as sink:
                long = sink.feed_request(
                    MeshState(task=stand_in_task("HOLD=4 a step longer than 1.5 s"), task_index=1)
                )
            assert _wait(lambda: len(collector.values) >= 2, 30), "the long run never reported"
            time.sleep(1.0)  # any duplicate would arrive now
    finally:
        collector.close()
        broker.stop()
        ledger.close()
    reported = Counter(json.loads(v)["run_id"] for v in collector.values)
    print(f"sweep: re-published {sweeper.republished}; reported {dict(reported)}")
    assert reported == {lost.run_id: 1, long.run_id: 1}
    assert republished_for_the_lost_run == 1 and sweeper.republished == 1
    assert all(n == 1 for n in step.calls.values()), step.calls


def _killed_and_restarted(broker: EmbeddedBroker, settings: Settings) -> EmbeddedBroker:
    """SIGKILL the broker, start a new one on the same port and create the mesh's topics."""
    port = broker.port
    os.kill(broker.pid or 0, signal.SIGKILL)
    broker.stop()
    restarted = EmbeddedBroker(port=port).start()
    _create_topics(settings)
    return restarted


def test_a_publisher_idle_through_a_broker_restart_needs_no_retry(tmp_path: Path) -> None:
    """A producer that lost every broker while idle is replaced before its next publish: one
    try is enough (before, that try waited out the delivery timeout and failed)."""
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp_path)
    _create_topics(settings)
    message = TaskMessage.from_state(MeshState(task=stand_in_task("idle")), source="feed")
    try:
        with KafkaPublisher(settings, delivery_timeout_s=3.0, max_tries=1) as publisher:
            publisher.publish(message)
            broker = _killed_and_restarted(broker, settings)
            delivery = publisher.publish(message)
            resets = publisher.producer_resets
    finally:
        broker.stop()
    assert delivery.offset == 0 and resets == 1


def bloating_step(
    node: str, state: MeshState, config: RunnableConfig | None = None
) -> tuple[dict[str, Any], StepRecord]:
    """The stand-in step; for a task marked BLOAT its code is 2 MB (an output above the limit)."""
    update, record = stand_in_step(node, state, config)
    if state.task and "BLOAT" in state.task.statement:
        last = record.state.attempts[-1]
        bloated = last.model_copy(update={"code": last.code + "#" * 2_000_000})
        state_after = record.state.model_copy(
            update={"attempts": [*record.state.attempts[:-1], bloated]}
        )
        record = record.model_copy(update={"state": state_after})
    return update, record


def test_a_publisher_outlives_a_broker_restart(tmp_path: Path) -> None:
    """The same KafkaPublisher before and after a same-port restart: its idempotent producer is
    unknown to the new broker; it is replaced and the publish goes through, no traceback."""
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp_path)
    _create_topics(settings)
    message = TaskMessage.from_state(MeshState(task=stand_in_task("across")), source="feed")
    try:
        with KafkaPublisher(settings, delivery_timeout_s=2.0, max_tries=4) as publisher:
            publisher.publish(message)
            broker = _killed_and_restarted(broker, settings)
            started = time.monotonic()
            delivery = publisher.publish(message)
            took = time.monotonic() - started
            resets = publisher.producer_resets
    finally:
        broker.stop()
    print(f"published after the restart in {took:.1f} s, producer replaced {resets} time(s)")
    assert delivery.offset == 0  # the new broker's first record
    assert resets >= 1 and took < 15


def _raw_produce(mesh: Mesh, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = Producer(
        with_logger({"bootstrap.servers": mesh.bootstrap, "message.max.bytes": 20_000_000})
    )
    producer.produce(mesh.topic(topic), value=value, key=key)
    assert producer.flush(20) == 0


def test_5mb_and_malformed_records_are_dead_lettered_and_the_worker_goes_on(mesh: Mesh) -> None:
    big = TaskMessage.from_state(
        MeshState(task=stand_in_task("big " + "x" * 5_000_000)), source="feed"
    )
    _raw_produce(mesh, AI_TOPIC, encode(big).value, key=b"five-mb")
    _raw_produce(mesh, AI_TOPIC, b'{"schema_version": 1, "task_id": oops', key=b"bad-json")
    _raw_produce(mesh, AI_TOPIC, b"[" * 200_000, key=b"deep")  # RecursionError in json.loads
    # a small task whose output (its code) is above the limit
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        bloat = sink.feed_task(stand_in_task("BLOAT small input"))
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        sink.feed_task(stand_in_task("small and fine"))

    with NodeWorker(
        "consumer", mesh.settings, bloating_step, WorkerOptions(topic_prefix=mesh.prefix)
    ) as worker:
        dead = [
            r.message
            for r in mesh.read(AI_DEAD_LETTER, 4, timeout_s=30)
            if isinstance(r.message, DeadLetter)
        ]
        solutions = mesh.read(AI_SOLUTIONS, 1, timeout_s=20)
        _wait(lambda: worker.stats.processed >= 1, 10)
    by_key = {d.key: d for d in dead}
    five = by_key["five-mb"]
    assert five.reason == "too_large" and five.raw_truncated
    assert five.raw_size == len(encode(big).value) and len(five.raw_value or "") == 4096
    assert five.source_topic == mesh.topic(AI_TOPIC) and five.offset is not None
    assert five.partition is not None and "above the 1,000,000-byte limit" in five.error
    assert by_key["bad-json"].reason == "malformed_json"
    assert by_key["deep"].reason in ("malformed_json", "schema_invalid")
    assert by_key["deep"].raw_truncated and by_key["deep"].raw_size == 200_000
    refused = by_key[bloat.task_id]
    assert (
        refused.reason == "output_refused" and "exceeds the 1,000,000-byte limit" in refused.error
    )
    assert not refused.raw_truncated and refused.run_id == bloat.run_id
    assert [r.message.state.task.statement for r in solutions] == ["small and fine"]  # type: ignore[union-attr]
    snap = worker.stats.snapshot()
    print(f"dead letters {sorted(by_key)}; stats {snap}")
    assert snap["dead_lettered"] == 4 and snap["processed"] == 1 and snap["oversized"] == 1


def test_publishing_above_the_limit_is_refused_at_once_with_size_and_limit(mesh: Mesh) -> None:
    big = TaskMessage.from_state(MeshState(task=stand_in_task("z" * 5_000_000)), source="feed")
    started = time.monotonic()
    with (
        KafkaPublisher(mesh.settings, topic_prefix=mesh.prefix) as publisher,
        pytest.raises(MessageTooLargeError) as refused,
    ):
        publisher.publish(big)
    assert time.monotonic() - started < 1.0  # not retried
    assert refused.value.limit == 1_000_000 and refused.value.size > 5_000_000
    assert "exceeds the 1,000,000-byte limit" in str(refused.value)


def test_an_infrastructure_outage_at_a_node_dead_letters_nothing(mesh: Mesh) -> None:
    """LLM endpoint, memory store and sandbox backend down for a while: retried, kept, resumed."""
    failures = [
        LLMUnavailableError("the LLM endpoint refused the connection"),
        MemoryUnavailableError("the memory store is unreachable"),
        SandboxError("bubblewrap cannot start"),
        LLMUnavailableError("still down"),
    ]
    outage = list(failures)

    def flaky(node: str, state: MeshState, config: RunnableConfig | None = None) -> Any:
        if outage:
            raise outage.pop(0)
        return stand_in_step(node, state, config)

    step = CountingStep(flaky)
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        fed = [sink.feed_task(stand_in_task(f"during the outage {i}")) for i in range(3)]
    # max_tries=1: anything that were not transient would be dead-lettered at once
    options = WorkerOptions(topic_prefix=mesh.prefix, retry=RetryPolicy(max_tries=1, backoff_s=0.1))
    with NodeWorker("consumer", mesh.settings, step, options) as worker:
        solutions = mesh.read(AI_SOLUTIONS, 3, timeout_s=30)
        _wait(lambda: worker.stats.processed >= 3, 10)
        snap = worker.stats.snapshot()
    print(f"outage of {len(failures)} failures; stats {snap}")
    assert {r.message.run_id for r in solutions if isinstance(r.message, SolutionMessage)} == {
        m.run_id for m in fed
    }
    assert snap["transient_errors"] == len(failures) and snap["node_errors"] == 0
    assert snap["dead_lettered"] == 0 and snap["processed"] == 3
    assert not mesh.read(AI_DEAD_LETTER, timeout_s=2, idle_s=1.0)


def _spawn_worker(
    mesh: Mesh, group_prefix: str, role: str = "consumer", **env: str
) -> subprocess.Popen[str]:
    """A stand-in worker process of `role` with `mesh`'s settings (its data dir, its database)."""
    settings = mesh.settings
    database = ["--database-url", settings.database_dsn] if settings.database_dsn else []
    return subprocess.Popen(
        [
            sys.executable, str(HERE / "kafka_stand_in_worker.py"),
            "--role", role, "--bootstrap", mesh.bootstrap, "--prefix", mesh.prefix,
            "--group-prefix", group_prefix, "--kafka-config", json.dumps(TEST_KAFKA_CONFIG),
            "--data-dir", str(settings.data_dir), *database,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **env},
    )  # fmt: skip


def _wait_line(process: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            raise AssertionError(
                f"worker exited: {process.stderr.read() if process.stderr else ''}"
            )
    raise AssertionError(f"no {prefix!r} from the worker within {timeout_s} s")


def test_a_restarted_worker_repeats_no_side_effect(mesh: Mesh) -> None:
    """Worker 1 handles 3 tasks and is SIGKILLed; worker 2 (a new process on the same host)
    gets all 3 again (a group with no commits: every record redelivered) and publishes nothing."""
    tasks = 3
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        for i in range(tasks):
            sink.feed_task(stand_in_task(f"once {i}"))
    first = _spawn_worker(mesh, f"{mesh.settings.kafka_group_prefix}-a")
    try:
        _wait_line(first, "JOINED", 30)
        assert len(mesh.read(AI_SOLUTIONS, tasks, timeout_s=20)) == tasks
    finally:
        first.kill()
        first.wait(10)
    second = _spawn_worker(mesh, f"{mesh.settings.kafka_group_prefix}-b")
    try:
        _wait_line(second, "JOINED", 30)
        time.sleep(2.0)
        second.send_signal(signal.SIGTERM)
        stats = json.loads(_wait_line(second, "STOPPED", 20).split(" ", 1)[1])
    finally:
        if second.poll() is None:
            second.kill()
        second.wait(10)
    print(f"restarted worker: {stats}")
    assert stats["consumed"] == tasks and stats["duplicates"] == tasks and stats["processed"] == 0
    assert len(mesh.read(AI_SOLUTIONS, timeout_s=3, idle_s=1.5)) == tasks


def test_a_dead_letter_that_cannot_be_published_does_not_wedge_the_worker(mesh: Mesh) -> None:
    """Dead letters carrying whole raw values (a policy no one should pick): the 5 MB record's
    own dead letter is refused; it is counted, the record committed, the next one handled."""
    _raw_produce(mesh, AI_TOPIC, b"x" * 5_000_000, key=b"five-mb")
    with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
        sink.feed_task(stand_in_task("behind it"))
    options = WorkerOptions(
        topic_prefix=mesh.prefix, dead_letters=DeadLetterPolicy(max_raw_bytes=10_000_000)
    )
    with NodeWorker("consumer", mesh.settings, stand_in_step, options) as worker:
        solutions = mesh.read(AI_SOLUTIONS, 1, timeout_s=40)
        _wait(lambda: worker.stats.processed + worker.stats.dead_letters_lost >= 2, 20)
        snap = worker.stats.snapshot()
    print(f"unpublishable dead letter: {snap}")
    assert len(solutions) == 1
    assert snap["dead_letters_lost"] == 1 and snap["dead_lettered"] == 0
    assert snap["processed"] == 1 and snap["consumed"] == 2


@pytest.fixture
def own_postgres() -> Iterator[ThrowAwayPostgres]:
    """A Postgres server of the test's own, to stop and restart."""
    try:
        server = ThrowAwayPostgres()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def _reported_once(collector: TopicCollector, runs: set[str]) -> None:
    reported = Counter(json.loads(v)["run_id"] for v in collector.values)
    assert set(reported) == runs and all(n == 1 for n in reported.values()), reported


@pytest.mark.parametrize("fault", ["restart", "away_20_s"])
def test_the_shared_database_restarting_mid_run_loses_nothing_and_runs_nothing_twice(
    mesh: Mesh, own_postgres: ThrowAwayPostgres, fault: str
) -> None:
    """The delivery ledger in Postgres; mid-run the server restarts (every session cut) or is
    away for 20 s: the workers wait for it (backoff), then every task is reported once, no step
    ran twice, nothing is dead-lettered."""
    tasks = 12
    settings = mesh.settings.model_copy(update={"database_url": own_postgres.new_database("mesh")})
    ledger = DeliveryLedger.for_settings(settings)
    step = CountingStep()
    collector = TopicCollector(mesh.bootstrap, mesh.topic(AI_REPORTS))
    options = WorkerOptions(topic_prefix=mesh.prefix, partitions=2)
    try:
        with MeshWorkers(NODES, settings, step, options, ledger=ledger) as workers:
            assert workers.wait_joined(30)
            with KafkaEdgeSink(settings, ledger=ledger, topic_prefix=mesh.prefix) as sink:
                runs = {
                    sink.feed_request(
                        MeshState(task=stand_in_task(f"HOLD=0.25 task {i}"), task_index=i)
                    ).run_id
                    for i in range(tasks)
                }
            assert _wait(lambda: len(collector.values) >= 2, 30), "no reports before the fault"
            if fault == "restart":
                own_postgres.restart()
            else:
                own_postgres.stop()
                time.sleep(20.0)
                own_postgres.start()
            assert _wait(lambda: len(collector.values) >= tasks, 90), len(collector.values)
            time.sleep(1.0)  # any duplicate would arrive now
            stats = {w.role: w.stats.snapshot() for w in workers.workers}
    finally:
        collector.close()
        ledger.close()
    print(f"database {fault}: stats {stats}")
    _reported_once(collector, runs)
    assert all(n == 1 for n in step.calls.values()), [k for k, n in step.calls.items() if n > 1]
    assert sum(s["dead_lettered"] for s in stats.values()) == 0


def test_a_whole_host_killed_mid_run_its_runs_finish_once_on_the_other(
    mesh: Mesh, postgres_url: str, tmp_path: Path
) -> None:
    """Two hosts (own data dirs, one database): host B, a process per role, is SIGKILLed
    whole while its consumer holds a task; host A's workers take its partitions and finish
    every run, each reported once (host A's ledger knows what host B handled)."""
    tasks = 12
    marks = tmp_path / "marks"
    marks.mkdir()
    shared = {"database_url": postgres_url}
    host_a = mesh.settings.model_copy(update={**shared, "data_dir": tmp_path / "host-a"})
    host_b = Mesh(
        mesh.broker,
        mesh.settings.model_copy(update={**shared, "data_dir": tmp_path / "host-b"}),
        mesh.prefix,
    )
    group = mesh.settings.kafka_group_prefix
    processes = [_spawn_worker(host_b, group, role, STAND_IN_MARK_DIR=str(marks)) for role in NODES]
    ledger = DeliveryLedger.for_settings(host_a)
    collector = TopicCollector(mesh.bootstrap, mesh.topic(AI_REPORTS))
    options = WorkerOptions(topic_prefix=mesh.prefix, partitions=2)
    try:
        for process in processes:
            _wait_line(process, "JOINED", 30)
        with MeshWorkers(NODES, host_a, CountingStep(), options, ledger=ledger) as workers:
            assert workers.wait_joined(30)
            with KafkaEdgeSink(host_a, ledger=ledger, topic_prefix=mesh.prefix) as sink:
                runs = {
                    sink.feed_request(
                        MeshState(task=stand_in_task(f"HOLD=0.5 task {i}"), task_index=i)
                    ).run_id
                    for i in range(tasks)
                }
            host_b_pids = {str(p.pid) for p in processes}
            assert _wait(lambda: any(m.name in host_b_pids for m in marks.iterdir()), 30)
            for process in processes:  # host B dies whole, mid-step; nothing restarts it
                process.kill()
            for process in processes:
                process.wait(10)
            assert _wait(lambda: len(collector.values) >= tasks, 60), len(collector.values)
            time.sleep(1.0)  # any duplicate would arrive now
            stats = {w.role: w.stats.snapshot() for w in workers.workers}
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        collector.close()
        ledger.close()
    print(f"host B killed; host A stats {stats}")
    _reported_once(collector, runs)
    assert sum(s["dead_lettered"] for s in stats.values()) == 0
