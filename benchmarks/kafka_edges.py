"""Benchmark the Kafka edges: a NodeWorker's hop vs raw confluent-kafka relays, same broker, same run.

    .venv/bin/python -m benchmarks.kafka_edges [--messages 500] [--latency-samples 200] [--rounds 5]
    .venv/bin/python -m benchmarks.kafka_edges --baseline main   # also the worker of main's tree
    .venv/bin/python -m benchmarks.kafka_edges --scripted-mesh 1,2,4 --tasks 24

One hop = a message produced on topic A, relayed to topic B, read by a probe. Each way to make
that hop is measured for throughput (a burst of `--messages`, messages/s) and latency (one
message at a time, median and p99); every relay runs in a process of its own
(`benchmarks/hop_relay.py`):

  raw_pipe           produce -> consume only (no relay): the broker's own floor
  raw_relay          plain confluent-kafka relay, one record at a time, with a worker's
                     guarantees: consume, produce, wait for the ack, commit synchronously
  raw_relay_batched  the same guarantees per batch of what is already fetched: the ceiling of
                     the client library on this broker
  mesh_worker        NodeWorker (role consumer) with a trivial node (a TEST DOUBLE that changes
                     nothing) and a file delivery ledger: decode/validate the full MeshState,
                     dedupe, run the step, publish the transition AND its telemetry, wait for the
                     acks, write the ledger, commit
  mesh_worker_before the same, from the tree of `--baseline REF`

Rounds take turns (before and after alternate going first); ratios are taken within each round,
reported as the median of the rounds and their range.

`--scripted-mesh 1,2,4` also measures tasks/s through all five real nodes (scripted LLM, real
sandbox) with 1, 2 and 4 worker members per role.

Results go to benchmarks/results/kafka_edges.json and a rich table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# run as a script, this directory would shadow the kafka_edges package with this very file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from app.services import build_context  # noqa: E402
from benchmarks.common import ROOT, begin, percentile, tree_of, write_json  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from graph.kafka_sink import KafkaEdgeSink  # noqa: E402
from graph.node_worker import MeshWorkers, WorkerOptions  # noqa: E402
from graph.routing import NODES  # noqa: E402
from graph.state import MeshState, Task  # noqa: E402
from graph.step import bind_step  # noqa: E402
from graph.topics import AI_REPORTS, AI_SOLUTIONS, AI_TOPIC  # noqa: E402
from graph.wire import TaskMessage, TaskRequest  # noqa: E402
from kafka_edges.admin import ensure_topics, qualified  # noqa: E402
from kafka_edges.broker import EmbeddedBroker, check_reachable  # noqa: E402
from kafka_edges.codec import encode  # noqa: E402
from kafka_edges.config import (  # noqa: E402
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    with_logger,
)
from kafka_edges.ledger import DeliveryLedger  # noqa: E402
from nodes import NODE_FUNCTIONS  # noqa: E402

RESULTS = HERE / "results" / "kafka_edges.json"
BEFORE = "mesh_worker_before"
console = Console()


def _task(i: int) -> Task:
    return Task(
        statement=f"Return the sum of two integers (benchmark task {i}).",
        signature="def add(a: int, b: int) -> int",
        entry_point="add",
        tests=["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"],
        category="math",
    )


def _task_message(i: int) -> TaskMessage:
    return TaskMessage.from_state(MeshState(task=_task(i), status="solving"), source="bench")


def _percentile(values: list[float], q: float) -> float:
    return percentile(values, q * 100)


class Probe:
    """Reads the hop's output topic (all partitions, no group) and stamps each arrival."""

    def __init__(self, bootstrap: str, topic: str, key_of: Callable[[Any], str]) -> None:
        conf = {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": CONSUMER_DEFAULTS["fetch.wait.max.ms"],
        }
        self.consumer = Consumer(with_logger(conf))
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.key_of = key_of
        self.arrivals: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            self.arrivals.setdefault(self.key_of(msg), time.perf_counter())

    def wait_for(self, key: str, timeout_s: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout_s
        while key not in self.arrivals:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"message {key} did not arrive")
            time.sleep(0.0002)
        return self.arrivals[key]

    def wait_count(self, count: int, timeout_s: float = 120.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while len(self.arrivals) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(self.arrivals)}/{count} arrived")
            time.sleep(0.001)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


@contextmanager
def _relay(kind: str, tree: Path, *args: str) -> Iterator[None]:
    """benchmarks/hop_relay.py `kind` in a process of its own, importing the mesh from `tree`;
    yields once it holds its partitions, stops it after."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(HERE / "hop_relay.py"), kind, *args]
    with subprocess.Popen(
        command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{kind} relay from {tree} did not start (exit {proc.wait()})")
            yield
        finally:
            proc.terminate()
            proc.wait(30)


def _feeder(bootstrap: str) -> Producer:
    return Producer(
        with_logger({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, "linger.ms": 0})
    )


def _measure(
    name: str,
    bootstrap: str,
    source: str,
    probe: Probe,
    messages: int,
    samples: int,
    make_record: Callable[[int], tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]]]],
) -> dict[str, Any]:
    producer = _feeder(bootstrap)
    # warm-up (connections, metadata, first fetches)
    for i in range(20):
        key, value, k, headers = make_record(10_000_000 + i)
        producer.produce(source, value=value, key=k, headers=headers)
        producer.flush(10)
        probe.wait_for(key)
    # latency: one message at a time
    latencies: list[float] = []
    for i in range(samples):
        key, value, k, headers = make_record(20_000_000 + i)
        sent = time.perf_counter()
        producer.produce(source, value=value, key=k, headers=headers)
        producer.poll(0)
        latencies.append((probe.wait_for(key) - sent) * 1000)
    # throughput: a burst
    before = len(probe.arrivals)
    records = [make_record(30_000_000 + i) for i in range(messages)]
    started = time.perf_counter()
    for _key, value, k, headers in records:
        producer.produce(source, value=value, key=k, headers=headers)
        producer.poll(0)
    producer.flush(30)
    probe.wait_count(before + messages, timeout_s=300)
    elapsed = max(probe.arrivals[r[0]] for r in records) - started
    return {
        "name": name,
        "messages": messages,
        "throughput_msg_s": messages / elapsed,
        "burst_seconds": elapsed,
        "latency_samples": samples,
        "latency_ms_median": statistics.median(latencies),
        "latency_ms_p99": _percentile(latencies, 0.99),
        "latency_ms_mean": statistics.fmean(latencies),
        "value_bytes": len(records[0][1]),
    }


@contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        check_reachable(bootstrap)
        yield bootstrap
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


def bench_hops(
    bootstrap: str,
    messages: int,
    samples: int,
    partitions: int,
    trees: dict[str, Path],
    ledgers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One round: raw_pipe, then each relay in its own process (the raw ones, and a mesh worker
    per tree in `trees`: "mesh_worker" is this tree), on the same broker. A mesh worker keeps
    its delivery ledger in a file of its own, or where `ledgers` says (a Postgres URL)."""
    tag = uuid.uuid4().hex[:6]
    admin = AdminClient(with_logger({"bootstrap.servers": bootstrap}))
    source_topics = [AI_TOPIC, AI_SOLUTIONS]

    def record_of(
        message: TaskMessage,
    ) -> tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]]]:
        wire = encode(message)
        return (
            message.task_id,
            wire.value,
            wire.key,
            [(k, v) for k, v in wire.headers if isinstance(v, bytes)],
        )

    def key_of(msg: Any) -> str:
        return (msg.key() or b"").decode()

    def measure(name: str, prefix: str, out: str = AI_SOLUTIONS) -> dict[str, Any]:
        probe = Probe(bootstrap, qualified(out, prefix), key_of)
        try:
            return _measure(
                name,
                bootstrap,
                qualified(AI_TOPIC, prefix),
                probe,
                messages,
                samples,
                lambda i: record_of(_task_message(i)),
            )
        finally:
            probe.close()

    prefix = f"b{tag}-pipe."
    ensure_topics(admin, [AI_TOPIC], partitions, prefix=prefix)
    results = [measure("raw_pipe", prefix, out=AI_TOPIC)]
    for kind in ("raw", "raw_batched"):
        prefix = f"b{tag}-{kind}."
        ensure_topics(admin, source_topics, partitions, prefix=prefix)
        args = ["--bootstrap", bootstrap, "--group", f"bench-{tag}-{kind}"]
        args += [
            "--source",
            qualified(AI_TOPIC, prefix),
            "--target",
            qualified(AI_SOLUTIONS, prefix),
        ]
        with _relay(kind, ROOT, *args):
            results.append(measure("raw_relay" if kind == "raw" else "raw_relay_batched", prefix))
    with tempfile.TemporaryDirectory() as tmp:
        for name, tree in trees.items():
            prefix = f"b{tag}-{name}."
            args = ["--bootstrap", bootstrap, "--group", f"bench-{tag}-{name}", "--prefix", prefix]
            ledger = (ledgers or {}).get(name, f"{tmp}/{name}.db")
            args += ["--partitions", str(partitions), "--ledger", ledger]
            with _relay("mesh", tree, *args):
                results.append(measure(name, prefix))
    return results


def bench_scripted_mesh(
    bootstrap: str, members: list[int], tasks: int, data_dir: Path, partitions: int = 4
) -> list[dict[str, Any]]:
    """Tasks/s through all five real nodes (scripted LLM, real sandbox, memory off), N members
    per role; the registry and learning store in `data_dir`."""

    rows = []
    for count in members:
        tag = uuid.uuid4().hex[:6]
        prefix = f"s{tag}."
        settings = Settings(
            llm="scripted",
            data_dir=data_dir,
            kafka_bootstrap=bootstrap,
            kafka_config={"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"},
            kafka_group_prefix=f"scripted-{tag}",
        )
        services = build_context(settings, use_memory=False)  # the transport is measured
        with MeshWorkers(
            NODES,
            settings,
            bind_step(NODE_FUNCTIONS, services),
            WorkerOptions(concurrency=count, topic_prefix=prefix, partitions=partitions),
            ledger=DeliveryLedger(":memory:"),
        ) as workers:
            workers.wait_joined(60)
            time.sleep(1.0)
            sink = KafkaEdgeSink(settings, topic_prefix=prefix)
            probe = Probe(
                bootstrap, qualified(AI_REPORTS, prefix), lambda m: json.loads(m.value())["run_id"]
            )
            started = time.perf_counter()
            for i in range(tasks):
                sink.publish(TaskRequest.from_state(MeshState(task_index=i), source="bench"))
            probe.wait_count(tasks, timeout_s=600)
            elapsed = max(probe.arrivals.values()) - started
            probe.close()
            sink.close()
            stats = {w.role: w.stats.snapshot() for w in workers.workers}
        rows.append(
            {
                "members_per_role": count,
                "tasks": tasks,
                "seconds": elapsed,
                "tasks_per_s": tasks / elapsed,
                "dead_lettered": sum(s["dead_lettered"] for s in stats.values()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="burst size for throughput")
    parser.add_argument(
        "--latency-samples", type=int, default=200, help="one-at-a-time hops for latency"
    )
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved repeats; medians reported"
    )
    parser.add_argument(
        "--bootstrap", default=None, help="a running broker (default: embedded tansu)"
    )
    parser.add_argument(
        "--scripted-mesh", default="", help="e.g. 1,2,4: tasks/s with real scripted nodes"
    )
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument(
        "--baseline", help="also run the mesh worker of this commit's tree (before/after)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    run = begin(
        messages=args.messages, latency_samples=args.latency_samples, partitions=args.partitions,
        rounds=args.rounds, scripted_mesh=args.scripted_mesh, tasks=args.tasks,
        broker=args.bootstrap or "embedded tansu (memory)", baseline=args.baseline,
    )  # fmt: skip
    with _broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        console.print(f"broker {bootstrap} ({'given' if args.bootstrap else 'embedded tansu'})")
        trees = {"mesh_worker": ROOT}
        if args.baseline:
            trees[BEFORE] = tree_of(args.baseline, Path(tmp) / "before")
        rounds = []
        for index in range(args.rounds):  # before and after take turns going first
            order = dict(sorted(trees.items(), reverse=index % 2 == 1))
            rounds.append(
                bench_hops(bootstrap, args.messages, args.latency_samples, args.partitions, order)
            )
        hops = median_rows(rounds)
        scripted = (
            bench_scripted_mesh(
                bootstrap, [int(x) for x in args.scripted_mesh.split(",")], args.tasks, Path(tmp)
            )
            if args.scripted_mesh
            else []
        )

    ratios = {
        f"{mesh}_over_{raw}": path_ratios(rounds, mesh, raw)
        for mesh in trees
        for raw in ("raw_relay", "raw_relay_batched")
    }
    result = {
        "benchmark": "kafka_edges",
        "broker": "embedded tansu (memory)" if not args.bootstrap else args.bootstrap,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "hops": hops,
        "hops_per_round": rounds,
        "baseline_commit": args.baseline,
        "ratios": ratios,
        "scripted_mesh": scripted,
    }
    write_json(args.out, result, run)

    table = Table(
        title=f"One hop: {args.messages}-message burst, {args.latency_samples} sequential "
        f"samples, median of {args.rounds} rounds"
    )
    for column in ("path", "msg/s", "median ms", "p99 ms", "value bytes"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for row in hops:
        table.add_row(
            row["name"],
            f"{row['throughput_msg_s']:.0f}",
            f"{row['latency_ms_median']:.2f}",
            f"{row['latency_ms_p99']:.2f}",
            f"{row['value_bytes']:.0f}",
        )
    console.print(table)
    for name, ratio in ratios.items():
        console.print(
            f"{name}: throughput x{_span(ratio['throughput'])}, "
            f"median latency x{_span(ratio['latency_median'])}, "
            f"p99 latency x{_span(ratio['latency_p99'])}"
        )
    if scripted:
        t2 = Table(title=f"Scripted mesh (real nodes, scripted LLM), {args.tasks} tasks")
        for column in ("members/role", "tasks/s", "seconds", "dead-lettered"):
            t2.add_column(column, justify="right")
        for row in scripted:
            t2.add_row(
                str(row["members_per_role"]),
                f"{row['tasks_per_s']:.2f}",
                f"{row['seconds']:.1f}",
                str(row["dead_lettered"]),
            )
        console.print(t2)
    console.print(f"wrote {args.out}")


def path_ratios(rounds: list[list[dict[str, Any]]], path: str, baseline: str) -> dict[str, Any]:
    """`path` over `baseline` within each round: the median of the rounds and their range
    (with 5 rounds, min..max covers the median with 94 % confidence, distribution-free)."""
    metrics = {
        "throughput": "throughput_msg_s",
        "latency_median": "latency_ms_median",
        "latency_p99": "latency_ms_p99",
    }
    per_round = []
    for rows in rounds:
        by_name = {row["name"]: row for row in rows}
        per_round.append({k: by_name[path][m] / by_name[baseline][m] for k, m in metrics.items()})
    return {
        k: {
            "median": statistics.median(r[k] for r in per_round),
            "min": min(r[k] for r in per_round),
            "max": max(r[k] for r in per_round),
            "per_round": [r[k] for r in per_round],
        }
        for k in metrics
    }


def _span(ratio: dict[str, Any]) -> str:
    return f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]"


def median_rows(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per path (rounds may order them differently), the median of each numeric metric."""
    rows = []
    for first in rounds[0]:
        same = [next(r for r in rows_of if r["name"] == first["name"]) for rows_of in rounds]
        row: dict[str, Any] = {"name": first["name"]}
        for key, value in same[0].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] = statistics.median(r[key] for r in same)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
