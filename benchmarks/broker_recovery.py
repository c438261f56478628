"""Broker recovery: where the time goes between a memory-only broker's restart and reports
flowing again.

    .venv/bin/python -m benchmarks.broker_recovery [--trials 3] [--tasks 24]

An in-process mesh (every role as one MeshWorkers member, the scripted TEST DOUBLE, memory off,
lost-run recovery on, the soak's group settings: session 6 s, heartbeat 0.5 s) on an embedded
tansu (memory storage). Per trial, on a fresh broker: the baseline, seconds from feeding
`--tasks` tasks to their first report on the healthy mesh; then `--tasks` more, the broker
SIGKILLed once a quarter of them are reported and restarted on the same port, and timed from
the restart: every role's member assigned partitions again (the group rejoin), the broker-reset
watch's re-publication done, the first and the last report. Writes
benchmarks/results/broker_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from rich.console import Console

from app.services import build_context
from benchmarks.common import begin, write_result
from foundation.settings import MemorySettings, Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, WorkerOptions
from graph.routing import NODES
from graph.state import MeshState
from graph.step import bind_step
from graph.topics import AI_REPORTS, ALL_TOPICS
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.config import common_config, with_logger
from kafka_edges.ledger import DeliveryLedger
from nodes import NODE_FUNCTIONS

console = Console()
GROUPS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
PARTITIONS = 4


class Reports:
    """Reads `ai_reports` in the background: (time, run id) of every report; a new group after
    each broker restart (the memory broker forgot the old one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: list[tuple[float, str]] = []
        self.generation = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
        self._thread.start()

    def _consumer(self) -> Consumer:
        conf = {
            **common_config(self.settings),
            "group.id": f"recovery-reports-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            **GROUPS,
        }
        consumer = Consumer(with_logger(conf))
        consumer.subscribe([AI_REPORTS])
        return consumer

    def _run(self) -> None:
        generation, consumer = self.generation, self._consumer()
        while not self._stop.is_set():
            if generation != self.generation:
                consumer.close()
                generation, consumer = self.generation, self._consumer()
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None and msg.value():
                self.seen.append((time.monotonic(), json.loads(msg.value() or b"{}")["run_id"]))
        consumer.close()

    def times_of(self, runs: set[str]) -> list[float]:
        firsts: dict[str, float] = {}
        for at, run in list(self.seen):
            if run in runs:
                firsts.setdefault(run, at)
        return sorted(firsts.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _feed(settings: Settings, ledger: DeliveryLedger, tasks: int) -> set[str]:
    with KafkaEdgeSink(settings, origin="feed", ledger=ledger) as sink:
        return {
            sink.feed_request(MeshState(task_index=i, max_attempts=1)).run_id for i in range(tasks)
        }


def _wait(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def trial(tasks: int, timeout_s: float) -> dict[str, Any]:
    broker = EmbeddedBroker().start()
    port = broker.port
    with tempfile.TemporaryDirectory(prefix="aimesh-recovery-") as tmp:
        settings = Settings(
            llm="scripted",
            data_dir=Path(tmp),
            kafka_bootstrap=broker.bootstrap,
            kafka_config=dict(GROUPS),
            kafka_group_prefix=f"recovery-{uuid.uuid4().hex[:6]}",
            memory=MemorySettings(enabled=False),
        )

        def create_topics() -> None:
            ensure_topics(AdminClient(with_logger(common_config(settings))), ALL_TOPICS, PARTITIONS)

        create_topics()
        reports = Reports(settings)
        ledger = DeliveryLedger.for_settings(settings)
        step = bind_step(NODE_FUNCTIONS, build_context(settings))
        try:
            with MeshWorkers(
                NODES, settings, step, WorkerOptions(partitions=PARTITIONS), ledger=ledger,
                recover_lost_runs=True,
            ) as mesh:  # fmt: skip
                if not mesh.wait_joined(120):
                    raise SystemExit("the mesh's members did not join their groups")
                fed_at = time.monotonic()
                healthy = _feed(settings, ledger, tasks)
                _wait(lambda: len(reports.times_of(healthy)) >= len(healthy), timeout_s)
                baseline = reports.times_of(healthy)[0] - fed_at
                faulted = _feed(settings, ledger, tasks)
                _wait(lambda: len(reports.times_of(faulted)) >= tasks // 4, timeout_s)
                before_kill = len(reports.times_of(faulted))
                killed_at = time.monotonic()
                os.kill(broker.pid or 0, signal.SIGKILL)
                broker.stop()
                broker = EmbeddedBroker(port=port).start()
                create_topics()
                restarted_at = time.monotonic()
                reports.generation += 1
                rejoined: dict[str, float] = {}
                unassigned: set[str] = set()
                republished_at: float | None = None
                deadline = restarted_at + timeout_s
                assert mesh.recovery is not None
                while time.monotonic() < deadline:
                    now = time.monotonic()
                    for worker in mesh.workers:
                        assigned = any(worker.stats.snapshot()["assignments"].values())
                        if not assigned:
                            unassigned.add(worker.role)
                        elif worker.role in unassigned and worker.role not in rejoined:
                            rejoined[worker.role] = now - restarted_at
                    if republished_at is None and mesh.recovery.watch.resets:
                        republished_at = now - restarted_at
                    if len(reports.times_of(faulted)) >= tasks and republished_at is not None:
                        break
                    time.sleep(0.05)
                after = [t - restarted_at for t in reports.times_of(faulted) if t >= restarted_at]
                stats = {w.role: w.stats.snapshot() for w in mesh.workers}
        finally:
            reports.close()
            ledger.close()
            broker.stop()
    return {
        "baseline_first_report_s": round(baseline, 2),
        "reported_before_kill": before_kill,
        "restart_took_s": round(restarted_at - killed_at, 2),
        "rejoined_s": {role: round(s, 2) for role, s in sorted(rejoined.items())},
        "watch_republished_s": round(republished_at, 2) if republished_at is not None else None,
        "first_report_s": round(after[0], 2) if after else None,
        "last_report_s": round(after[-1], 2) if after else None,
        "reported": len(reports.times_of(faulted)),
        "fed": tasks,
        "producer_restarts": sum(s["producer_restarts"] for s in stats.values()),
        "duplicates_skipped": sum(s["duplicates"] for s in stats.values()),
    }


def _median(trials: list[dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in trials if t[key] is not None]
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each wait")
    parser.add_argument("--name", default="broker_recovery", help="results/<name>.json")
    args = parser.parse_args()
    run = begin(**vars(args))
    trials = []
    for number in range(1, args.trials + 1):
        result = trial(args.tasks, args.timeout)
        console.print(f"trial {number}: {result}")
        trials.append(result)
    summary = {
        key: _median(trials, key)
        for key in (
            "baseline_first_report_s", "watch_republished_s", "first_report_s", "last_report_s",
        )
    }  # fmt: skip
    rejoins = [max(t["rejoined_s"].values()) for t in trials if t["rejoined_s"]]
    summary["last_role_rejoined_s"] = round(statistics.median(rejoins), 2) if rejoins else None
    report = {
        "benchmark": "broker_recovery",
        "model": "scripted TEST DOUBLE (AIMESH_LLM=scripted), memory off",
        "median": summary,
        "lost": sum(t["fed"] - t["reported"] for t in trials),
        "trials": trials,
    }
    path = write_result(args.name, report, run)
    console.print(f"median {summary}; lost {report['lost']}; written to {path}")


if __name__ == "__main__":
    main()
