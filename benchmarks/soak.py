"""Soak: the distributed mesh under worker kills and a broker restart; is anything lost or doubled?

    .venv/bin/python -m benchmarks.soak [--tasks 200] [--workers 2] [--kill-every 5]
                                        [--timeout 900] [--stale 60]

`--workers` supervised `aimesh worker --role R` processes per role (`app.distributed`, the
scripted TEST DOUBLE, memory off) on one embedded tansu broker (memory storage). Every task is fed
at the start through `KafkaEdgeSink.feed_request` with the delivery ledger (so the runs the broker
forgets can be re-published: the workers' own `--recover` watch does it after the restart, and
their sweep re-publishes any run that has not moved for `--stale` s). Every `--kill-every`
seconds a random live worker process is SIGKILLed (the supervisor restarts it); once half the
tasks are reported the broker is SIGKILLed and restarted on the same port. A background reader
collects every record of every mesh topic (a new group after the restart: the memory broker
forgot the old one). Counted (pure functions below, tested in tests/benchmarks/test_soak.py):
fed, reported (distinct run ids on the reports topic, or whose report the ledger holds: the
broker confirmed it, then lost it before the collector read it), lost (fed - reported),
duplicated reports (copies of a run id's report beyond the first), steps executed twice (an edge
record key seen with two DIFFERENT values in one broker lifetime; identical copies are
re-publications, recognised by the next worker), dead letters, the runs the reader of `aimesh
feed --wait` and `run --distributed` (`app.distributed.await_reports`: the reports topic across
broker resets, and the ledger) saw and missed; recovery from the broker restart
to the first (and the tenth) report after it, and per worker kill the seconds until its replacement process joined its group. Every loop is bounded
by `--timeout`. Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.distributed import (
    WorkerSupervisor,
    await_reports,
    partitions_for,
    reports_in_ledger,
    worker_processes,
)
from benchmarks.common import begin, write_result
from foundation.settings import MemorySettings, Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState
from graph.topics import AI_DEAD_LETTER, AI_REPORTS, AI_TELEMETRY, ALL_TOPICS
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.config import common_config, topic_prefix, with_logger
from kafka_edges.ledger import DeliveryLedger

console = Console()
FAST_GROUPS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


@dataclass(frozen=True)
class Seen:
    """One record the collector read: which broker lifetime, topic (unprefixed), raw value, when."""

    generation: int
    topic: str
    value: bytes
    at: float


# ---------------------------------------------------------------- counting (pure functions)


def _fields(value: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def report_counts(
    fed: set[str], report_run_ids: list[str], in_ledger: set[str] | None = None
) -> dict[str, int]:
    """fed, reported (distinct fed run ids reported), lost, duplicated (reports beyond the first
    per run id) and unexpected (reports of run ids never fed). `in_ledger`: runs whose report
    the delivery ledger holds (confirmed by a broker that may have lost it before the collector
    read it); they count as reported, and how many were reported only there is given."""
    counts = Counter(report_run_ids)
    on_topic = {run for run in counts if run in fed}
    reported = on_topic | ((in_ledger or set()) & fed)
    return {
        "fed": len(fed),
        "reported": len(reported),
        "reported_only_in_ledger": len(reported - on_topic),
        "lost": len(fed - reported),
        "duplicated": sum(n - 1 for run, n in counts.items() if run in fed and n > 1),
        "unexpected": sum(n for run, n in counts.items() if run not in fed),
    }


def steps_executed_twice(records: list[Seen]) -> int:
    """Edge records with the same (broker lifetime, topic, run id, attempt, source) but different
    bytes: the step that produced them ran twice. Byte-identical copies are re-publications of
    one output (ledger recovery) and are not counted; reports, telemetry and dead letters are not
    edges."""
    values: dict[tuple[int, str, str, int, str], set[bytes]] = defaultdict(set)
    for seen in records:
        if seen.topic in (AI_REPORTS, AI_TELEMETRY, AI_DEAD_LETTER):
            continue
        f = _fields(seen.value)
        if "run_id" not in f:
            continue
        key = (seen.generation, seen.topic, str(f["run_id"]), int(f.get("attempt", 0)),
               str(f.get("source", "")))  # fmt: skip
        values[key].add(seen.value)
    return sum(len(v) - 1 for v in values.values() if len(v) > 1)


def first_after(times: list[float], moment: float) -> float | None:
    """Seconds from `moment` to the first time at or after it (None if there is none)."""
    later = [t for t in times if t >= moment]
    return round(min(later) - moment, 2) if later else None


# ---------------------------------------------------------------- the run


class Collector:
    """Reads every mesh topic in the background; a new group per broker lifetime."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = topic_prefix(settings)
        self.records: list[Seen] = []
        self.generation = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="soak-collector", daemon=True)
        self._thread.start()

    def restart(self) -> None:
        self.generation += 1

    def _consumer(self) -> Consumer:
        conf = {
            **common_config(self.settings),
            "group.id": f"soak-collector-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            **FAST_GROUPS,
        }
        consumer = Consumer(with_logger(conf))
        consumer.subscribe([self.prefix + t for t in ALL_TOPICS])
        return consumer

    def _run(self) -> None:
        generation = self.generation
        consumer = self._consumer()
        while not self._stop.is_set():
            if generation != self.generation:
                consumer.close()
                generation = self.generation
                consumer = self._consumer()
            msg = consumer.poll(0.1)
            value = msg.value() if msg is not None and msg.error() is None else None
            if msg is None or not value:
                continue
            topic = (msg.topic() or "").removeprefix(self.prefix)
            with self._lock:
                self.records.append(Seen(generation, topic, value, time.monotonic()))
        consumer.close()

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class Kill:
    role: str
    pid: int
    at: float
    slot_index: int
    replaced_pid: int | None = None
    ready_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def report_ids(records: list[Seen]) -> list[str]:
    return [
        str(f["run_id"])
        for r in records
        if r.topic == AI_REPORTS and "run_id" in (f := _fields(r.value))
    ]


def kill_one(supervisor: WorkerSupervisor, rng: random.Random) -> Kill | None:
    live = [(i, s) for i, s in enumerate(supervisor.slots) if s.proc.poll() is None]
    if not live:
        return None
    index, slot = rng.choice(live)
    os.kill(slot.proc.pid, signal.SIGKILL)
    return Kill(slot.role, slot.proc.pid, time.monotonic(), index)


def note_replacements(kills: list[Kill], supervisor: WorkerSupervisor, now: float) -> None:
    """For each kill, the pid of its replacement and, once it joined its group, how long that
    took."""
    for kill in kills:
        slot = supervisor.slots[kill.slot_index]
        if kill.ready_s is None and slot.proc.pid != kill.pid:
            kill.replaced_pid = slot.proc.pid
            if slot.ready.is_set():
                kill.ready_s = round(now - kill.at, 2)


def restart_broker(
    broker: EmbeddedBroker, settings: Settings, partitions: int, collector: Collector
) -> tuple[EmbeddedBroker, float, float]:
    """SIGKILL the broker and start a new one on its port, with the mesh's topics; the new
    broker, when the old one was killed and when the new one was up."""
    killed_at = time.monotonic()
    os.kill(broker.pid or 0, signal.SIGKILL)
    broker.stop()
    broker = EmbeddedBroker(port=broker.port).start()
    restarted_at = time.monotonic()
    ensure_topics(
        AdminClient(with_logger(common_config(settings))),
        ALL_TOPICS, partitions, prefix=topic_prefix(settings),
    )  # fmt: skip
    collector.restart()
    return broker, killed_at, restarted_at


def recovery_after(report_times: list[float], moment: float) -> dict[str, float | None]:
    """Seconds from `moment` to the first and to the tenth report after it."""
    after = sorted(t - moment for t in report_times if t >= moment)
    return {
        "reports_flow_again_s": first_after(report_times, moment),
        "tenth_report_after_s": round(after[9], 2) if len(after) > 9 else None,
    }


def replacement_summary(kills: list[Kill]) -> dict[str, Any]:
    ready = [k.ready_s for k in kills if k.ready_s is not None]
    return {
        "max": max(ready) if ready else None,
        "mean": round(sum(ready) / len(ready), 2) if ready else None,
        "n": len(ready),
        "all": ready,
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    tag = f"soak-{uuid.uuid4().hex[:6]}"
    broker = EmbeddedBroker().start()
    port = broker.port
    kills: list[Kill] = []
    broker_event: dict[str, Any] = {}
    reader_seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="aimesh-soak-") as tmp:
        settings = Settings(
            llm="scripted",
            scripted_delay_s=args.delay,
            data_dir=Path(tmp),
            kafka_bootstrap=broker.bootstrap,
            kafka_config=dict(FAST_GROUPS),
            kafka_topic_prefix=f"{tag}.",
            kafka_group_prefix=f"aimesh-{tag}",
            memory=MemorySettings(enabled=False),
            kafka_stale_run_s=args.stale,
        )
        partitions = partitions_for(args.workers)
        collector = Collector(settings)
        started = time.monotonic()
        deadline = started + args.timeout
        try:
            with worker_processes(
                settings, args.workers, restart_budget=10**6, partitions=partitions
            ) as supervisor:
                if not supervisor.wait_ready(timeout_s=min(300, args.timeout)):
                    raise SystemExit("the workers did not join their groups in time")
                ready_s = time.monotonic() - started
                console.print(f"{len(supervisor.slots)} workers ready in {ready_s:.1f} s")
                with (
                    DeliveryLedger.for_settings(settings) as ledger,
                    KafkaEdgeSink(settings, origin="feed", ledger=ledger) as sink,
                ):
                    fed = {
                        sink.feed_request(
                            MeshState(task_index=i, max_attempts=settings.max_attempts)
                        ).run_id
                        for i in range(args.tasks)
                    }
                fed_at = time.monotonic()
                # what `aimesh feed --wait` and `run --distributed` wait with, in the background
                reader = ThreadPoolExecutor(1, thread_name_prefix="soak-reader")
                reader_missed = reader.submit(
                    await_reports, settings, fed, lambda m: reader_seen.add(m.run_id),
                    timeout_s=max(1.0, deadline - fed_at),
                )  # fmt: skip
                next_kill = fed_at + args.kill_every
                broker_done = False
                with Progress(
                    TextColumn("[bold]soak"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                ) as progress:  # fmt: skip
                    bar = progress.add_task("", total=len(fed))
                    while time.monotonic() < deadline:
                        supervisor.check()
                        now = time.monotonic()
                        note_replacements(kills, supervisor, now)
                        done = len(set(report_ids(collector.snapshot())) & fed)
                        progress.update(
                            bar, completed=done,
                            description=f"{len(kills)} worker kills, broker "
                            f"{'restarted' if broker_done else 'up'}",
                        )  # fmt: skip
                        if done >= len(fed):
                            break
                        if not broker_done and done >= len(fed) // 2:
                            broker, killed_at, restarted_at = restart_broker(
                                broker, settings, partitions, collector
                            )
                            broker_done = True
                            broker_event = {
                                "reported_before_kill": done,
                                "killed_at_s": round(killed_at - fed_at, 2),
                                "restart_took_s": round(restarted_at - killed_at, 2),
                                "_restarted_at": restarted_at,
                            }
                            progress.console.print(
                                f"broker killed with {done} reported; restarted on port {port} "
                                f"in {restarted_at - killed_at:.2f} s"
                            )
                        if args.kill_every > 0 and now >= next_kill:
                            victim = kill_one(supervisor, rng)
                            if victim is not None:
                                kills.append(victim)
                            next_kill = now + args.kill_every
                        time.sleep(0.2)
                    elapsed = time.monotonic() - fed_at
                    time.sleep(args.settle)  # any late duplicate arrives now
                    supervisor.check()
                    note_replacements(kills, supervisor, time.monotonic())
                restarts = dict(supervisor.restarts)
                missed_by_reader = len(reader_missed.result())
                reader.shutdown()
        finally:
            collector.close()
            broker.stop()
        with DeliveryLedger.for_settings(settings) as ledger:
            in_ledger = {report.run_id for report in reports_in_ledger(ledger, fed)}
    records = collector.snapshot()
    counts = report_counts(fed, report_ids(records), in_ledger)
    report_times = [r.at for r in records if r.topic == AI_REPORTS]
    if broker_event:
        recovery = recovery_after(report_times, broker_event.pop("_restarted_at"))
        broker_event["reports_flow_again_s"] = recovery["reports_flow_again_s"]
        broker_event["tenth_report_after_restart_s"] = recovery["tenth_report_after_s"]
    return {
        "benchmark": "soak",
        "model": "scripted TEST DOUBLE (AIMESH_LLM=scripted), memory off",
        "workers_per_role": args.workers,
        "processes": len(restarts) * args.workers,
        "partitions": partitions,
        "workers_ready_s": round(ready_s, 1),
        **counts,
        "seen_by_the_reader": len(reader_seen & fed),
        "missed_by_the_reader": missed_by_reader,
        "steps_executed_twice": steps_executed_twice(records),
        "dead_lettered": sum(1 for r in records if r.topic == AI_DEAD_LETTER),
        "seconds_feed_to_last_report": round(elapsed, 1),
        "completed": counts["lost"] == 0,
        "broker_restart": broker_event or None,
        "worker_kills": len(kills),
        "worker_kills_by_role": dict(Counter(k.role for k in kills)),
        "worker_restarts": restarts,
        "replacement_ready_s": replacement_summary(kills),
        "goals": {
            "lost": 0,
            "duplicated": 0,
            "dead_lettered": 0,
            "recovery_s": 15,
            "missed_by_the_reader": 0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per role")
    parser.add_argument("--kill-every", type=float, default=5.0, help="s between worker kills")
    parser.add_argument("--delay", type=float, default=0.0, help="scripted model: s per call")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run")
    parser.add_argument("--settle", type=float, default=3.0, help="s to wait for late copies")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--stale", type=float, default=60.0, help="AIMESH_KAFKA_STALE_RUN_S of the workers' sweep"
    )
    parser.add_argument("--name", default="soak", help="results/<name>.json")
    args = parser.parse_args()
    run = begin(**vars(args))
    report = soak(args)
    path = write_result(args.name, report, run)
    b = report["broker_restart"] or {}
    console.print(
        f"fed {report['fed']}, reported {report['reported']}, lost {report['lost']}, "
        f"duplicated {report['duplicated']}, steps twice {report['steps_executed_twice']}, "
        f"dead-lettered {report['dead_lettered']}; broker: reports again "
        f"{b.get('reports_flow_again_s')} s after the restart; {report['worker_kills']} worker "
        f"kills, replacement ready max {report['replacement_ready_s']['max']} s"
    )
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
