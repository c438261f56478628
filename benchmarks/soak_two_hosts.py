"""Soak across two hosts: a whole host killed, workers killed on both, the broker restarted; with
the shared state in Postgres, is anything lost or doubled? And what does the Postgres ledger cost
a hop against the SQLite one?

    .venv/bin/python -m benchmarks.soak_two_hosts [--tasks 200] [--kill-every 5] [--stale 30]
                                                  [--timeout 1200] [--hop-rounds 3]

Two hosts simulated on this machine: two `WorkerSupervisor`s of one `aimesh worker --role R`
process per role each (the scripted TEST DOUBLE, memory off), each with a data dir of its own,
sharing nothing but the embedded broker and one throw-away Postgres cluster
(`AIMESH_DATABASE_URL`: the delivery ledger and the learning store). Every task is fed at the
start (`KafkaEdgeSink.feed_request` with the shared ledger). Every `--kill-every` s a random live
worker process of a live host is SIGKILLed (its host restarts it); once a third of the tasks are
reported host B is SIGKILLed whole (every worker; nothing restarts it: its partitions move to
host A's workers, and the runs it held are re-published by host A's sweep once their leases
lapse, `--stale`); once two thirds are reported the broker is SIGKILLed and restarted. Counted as
in `benchmarks.soak` (its collector and counting functions), and per fault the seconds until the
next report.

Then, on the same broker, the edge hop (`benchmarks.kafka_edges.bench_hops`) of a mesh worker
with its ledger in a SQLite file against one with its ledger in the Postgres cluster, rounds
interleaved: throughput and p99 ratio (goal: Postgres at least x0.8 of SQLite).

Writes benchmarks/results/soak_two_hosts.json.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from app.distributed import WorkerSupervisor, partitions_for, reports_in_ledger
from benchmarks.common import ROOT, begin, write_result
from benchmarks.kafka_edges import bench_hops, median_rows, path_ratios
from benchmarks.soak import (
    FAST_GROUPS,
    Collector,
    Kill,
    console,
    kill_one,
    note_replacements,
    recovery_after,
    replacement_summary,
    report_counts,
    report_ids,
    restart_broker,
    steps_executed_twice,
)
from foundation.postgres_server import ThrowAwayPostgres
from foundation.settings import MemorySettings, Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState
from graph.topics import AI_DEAD_LETTER, AI_REPORTS, ALL_TOPICS
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.config import common_config, topic_prefix, with_logger
from kafka_edges.ledger import DeliveryLedger

HOSTS = ("host-a", "host-b")
SQLITE_PATH, POSTGRES_PATH = "mesh_worker_sqlite_ledger", "mesh_worker_postgres_ledger"


def kill_host(supervisor: WorkerSupervisor) -> list[int]:
    """SIGKILL every worker of a host and stop supervising it (nothing restarts them)."""
    supervisor._stopping = True
    pids = [slot.proc.pid for slot in supervisor.slots if slot.proc.poll() is None]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for slot in supervisor.slots:
        slot.proc.wait()
    return pids


def host_settings(base: Settings, root: Path, host: str) -> Settings:
    return base.model_copy(update={"data_dir": root / host})


def run_soak(
    args: argparse.Namespace, url: str, broker: EmbeddedBroker
) -> tuple[dict[str, Any], EmbeddedBroker]:
    """The soak on `broker` (restarted once: the broker running at the end is returned)."""
    rng = random.Random(args.seed)
    tag = f"soak2-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="aimesh-soak2-") as tmp:
        base = Settings(
            llm="scripted",
            data_dir=Path(tmp),
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            kafka_config=dict(FAST_GROUPS),
            kafka_topic_prefix=f"{tag}.",
            kafka_group_prefix=f"aimesh-{tag}",
            memory=MemorySettings(enabled=False),
            kafka_stale_run_s=args.stale,
        )
        partitions = partitions_for(2)
        ensure_topics(
            AdminClient(with_logger(common_config(base))), ALL_TOPICS, partitions,
            prefix=topic_prefix(base),
        )  # fmt: skip
        hosts = {
            name: WorkerSupervisor(host_settings(base, Path(tmp), name), 1, restart_budget=10**6,
                                   partitions=partitions)
            for name in HOSTS
        }  # fmt: skip
        collector = Collector(base)
        kills: list[tuple[str, Kill]] = []
        faults: dict[str, Any] = {}
        started = time.monotonic()
        deadline = started + args.timeout
        try:
            for supervisor in hosts.values():
                supervisor.start()
            if not all(s.wait_ready(timeout_s=min(300, args.timeout)) for s in hosts.values()):
                raise SystemExit("the workers did not join their groups in time")
            ready_s = time.monotonic() - started
            console.print(
                f"2 hosts x {len(hosts['host-a'].slots)} workers ready in {ready_s:.1f} s"
            )
            with (
                DeliveryLedger.for_settings(base) as ledger,
                KafkaEdgeSink(base, origin="feed", ledger=ledger) as sink,
            ):
                fed = {
                    sink.feed_request(
                        MeshState(task_index=i, max_attempts=base.max_attempts)
                    ).run_id
                    for i in range(args.tasks)
                }
            fed_at = time.monotonic()
            next_kill = fed_at + args.kill_every
            live = dict(hosts)
            while time.monotonic() < deadline:
                for supervisor in live.values():
                    supervisor.check()
                now = time.monotonic()
                for name, supervisor in live.items():
                    note_replacements([k for h, k in kills if h == name], supervisor, now)
                done = len(set(report_ids(collector.snapshot())) & fed)
                if done >= len(fed):
                    break
                if "host_kill" not in faults and done >= len(fed) // 3:
                    pids = kill_host(live.pop("host-b"))
                    faults["host_kill"] = {"reported_before": done, "workers_killed": len(pids),
                                           "_at": time.monotonic()}  # fmt: skip
                    console.print(f"host-b killed whole ({len(pids)} workers) with {done} reported")
                if "broker_restart" not in faults and done >= 2 * len(fed) // 3:
                    broker, killed_at, restarted_at = restart_broker(
                        broker, base, partitions, collector
                    )
                    faults["broker_restart"] = {
                        "reported_before": done, "restart_took_s": round(restarted_at - killed_at, 2),
                        "_at": restarted_at,
                    }  # fmt: skip
                    console.print(f"broker killed with {done} reported and restarted")
                if args.kill_every > 0 and now >= next_kill:
                    name = rng.choice(sorted(live))
                    victim = kill_one(live[name], rng)
                    if victim is not None:
                        kills.append((name, victim))
                    next_kill = now + args.kill_every
                time.sleep(0.2)
            elapsed = time.monotonic() - fed_at
            time.sleep(args.settle)  # any late duplicate arrives now
            console.print(f"{done}/{len(fed)} reported in {elapsed:.0f} s")
        finally:
            collector.close()
            for supervisor in hosts.values():
                supervisor.stop()
        with DeliveryLedger.for_settings(base) as ledger:
            in_ledger = {report.run_id for report in reports_in_ledger(ledger, fed)}
    records = collector.snapshot()
    counts = report_counts(fed, report_ids(records), in_ledger)
    report_times = [r.at for r in records if r.topic == AI_REPORTS]
    for fault in faults.values():
        fault.update(recovery_after(report_times, fault.pop("_at")))
    after_kills = [
        recovery_after(report_times, kill.at)["reports_flow_again_s"] for _, kill in kills
    ]
    flowing = [s for s in after_kills if s is not None]
    return {
        "benchmark": "soak_two_hosts",
        "model": "scripted TEST DOUBLE (AIMESH_LLM=scripted), memory off",
        "hosts": len(HOSTS),
        "workers_per_role": len(HOSTS),
        "processes": sum(len(h.slots) for h in hosts.values()),
        "partitions": partitions,
        "shared_state": "Postgres (throw-away cluster): delivery ledger, learning store",
        "workers_ready_s": round(ready_s, 1),
        **counts,
        "steps_executed_twice": steps_executed_twice(records),
        "dead_lettered": sum(1 for r in records if r.topic == AI_DEAD_LETTER),
        "seconds_feed_to_last_report": round(elapsed, 1),
        "completed": counts["lost"] == 0,
        "host_kill": faults.get("host_kill"),
        "broker_restart": faults.get("broker_restart"),
        "worker_kills": len(kills),
        "worker_kills_by_host": dict(Counter(h for h, _ in kills)),
        "worker_kills_by_role": dict(Counter(k.role for _, k in kills)),
        "worker_restarts": {name: dict(h.restarts) for name, h in hosts.items()},
        "replacement_ready_s": replacement_summary([k for _, k in kills]),
        "reports_flow_again_after_worker_kill_s": {
            "max": max(flowing) if flowing else None,
            "n": len(flowing),
        },
        "goals": {"lost": 0, "duplicated": 0, "dead_lettered": 0, "recovery_s": 15},
    }, broker


def run_hops(args: argparse.Namespace, url: str, bootstrap: str) -> dict[str, Any]:
    """The edge hop with each ledger, interleaved rounds on one broker."""
    rounds = []
    for index in range(args.hop_rounds):
        order = [SQLITE_PATH, POSTGRES_PATH][:: -1 if index % 2 else 1]
        rounds.append(
            bench_hops(
                bootstrap,
                args.hop_messages,
                args.hop_samples,
                1,
                dict.fromkeys(order, ROOT),
                ledgers={POSTGRES_PATH: url},
            )
        )
    ratio = path_ratios(rounds, POSTGRES_PATH, SQLITE_PATH)
    return {
        "messages": args.hop_messages,
        "latency_samples": args.hop_samples,
        "rounds": args.hop_rounds,
        "hops": [r for r in median_rows(rounds) if r["name"] in (SQLITE_PATH, POSTGRES_PATH)],
        "postgres_over_sqlite": ratio,
        "goal": "throughput ratio >= 0.8 and p99 ratio <= 1.25",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=5.0, help="s between worker kills")
    parser.add_argument("--timeout", type=float, default=1200.0, help="bound on the soak")
    parser.add_argument("--settle", type=float, default=3.0, help="s to wait for late copies")
    parser.add_argument("--seed", type=int, default=30)
    parser.add_argument("--stale", type=float, default=30.0, help="AIMESH_KAFKA_STALE_RUN_S")
    parser.add_argument("--hop-rounds", type=int, default=3)
    parser.add_argument("--hop-messages", type=int, default=1000)
    parser.add_argument("--hop-samples", type=int, default=200)
    parser.add_argument("--name", default="soak_two_hosts", help="results/<name>.json")
    args = parser.parse_args()
    run = begin(**vars(args))
    broker = EmbeddedBroker().start()
    try:
        with ThrowAwayPostgres() as postgres:
            report, broker = run_soak(args, postgres.new_database("soak"), broker)
            report["hop"] = run_hops(args, postgres.new_database("hops"), broker.bootstrap)
    finally:
        broker.stop()
    path = write_result(args.name, report, run)
    ratio = report["hop"]["postgres_over_sqlite"]
    console.print(
        f"fed {report['fed']}, reported {report['reported']}, lost {report['lost']}, "
        f"duplicated {report['duplicated']}, steps twice {report['steps_executed_twice']}, "
        f"dead-lettered {report['dead_lettered']}; reports again "
        f"{(report['host_kill'] or {}).get('reports_flow_again_s')} s after the host kill, "
        f"{(report['broker_restart'] or {}).get('reports_flow_again_s')} s after the broker "
        f"restart; hop Postgres/SQLite throughput x{ratio['throughput']['median']:.2f}, "
        f"p99 x{ratio['latency_p99']['median']:.2f}"
    )
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
