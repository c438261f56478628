"""Scale-out of the distributed mesh against a latency-bound model, then the real local model.

    .venv/bin/python -m benchmarks.scale_out [--workers 1,2,4,8] [--tasks 96] [--delay 0.5]
                                             [--local-workers 1,2] [--local-tasks 4]

A node in a real deployment mostly waits on a remote LLM endpoint. The stand-in is the scripted
TEST DOUBLE with a fixed per-call delay (`AIMESH_SCRIPTED_DELAY_S`; sleeping, no CPU), so the
figures show what the mesh's plumbing does with more workers when the model is not the CPU.
For each N, `run --distributed`'s supervisor starts N worker processes per node on fresh topics
(own prefix, max(4, N) partitions, on one embedded broker), waits until every worker has joined
its group, runs a warm-up of N tasks, then feeds the same T tasks and times them to the last
report. Memory is off (each worker process would load its own embedder). Throughput is given
end to end (feed to last report) and steady (from the first quarter of reports to the last),
with the workers' CPU seconds per task in the timed window. Then the same with the real local
model (one shared llama.cpp server, `AIMESH_LLM=local`) at `--local-workers`, a few tasks.
Writes benchmarks/results/scale_out.json and scale_out.png.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.distributed import (
    WorkerSupervisor,
    collect_reports,
    feed_tasks,
    partitions_for,
    shared_llm_endpoint,
    worker_processes,
)
from benchmarks.common import RESULTS_DIR, begin, load_average, saved_figure, write_result
from foundation.settings import MemorySettings, Settings
from graph.state import TaskOutcome
from kafka_edges.broker import EmbeddedBroker
from llm.chat import model_label

console = Console()
FAST_GROUPS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(supervisor: WorkerSupervisor) -> float:
    """User + system CPU seconds used so far by the supervisor's worker processes and their
    finished children (the sandbox runs)."""
    total = 0
    for slot in supervisor.slots:
        try:
            fields = Path(f"/proc/{slot.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def measure(settings: Settings, workers: int, tasks: int, warmup: int) -> dict[str, Any]:
    """One configuration: N workers per node on fresh topics; warm-up, then T timed tasks."""
    tag = f"so{workers}-{uuid.uuid4().hex[:6]}"
    settings = settings.model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "kafka_group_prefix": f"aimesh-{tag}"}
    )
    load_before = load_average()
    started = time.perf_counter()
    with worker_processes(settings, workers, partitions=partitions_for(workers)) as supervisor:
        if not supervisor.wait_ready(timeout_s=600):
            raise SystemExit(f"{workers} workers per node did not join their groups in 600 s")
        ready_s = time.perf_counter() - started
        if warmup:
            runs = feed_tasks(settings, [None] * warmup)
            got = collect_reports(settings, runs, supervisor, timeout_s=600)
            if len(got) < warmup:
                raise SystemExit(f"warm-up: {len(got)} of {warmup} reported")
        arrivals: list[float] = []
        cpu_before = cpu_seconds(supervisor)
        t0 = time.perf_counter()
        runs = feed_tasks(settings, [None] * tasks, first_index=warmup)
        outcomes = collect_reports(
            settings,
            runs,
            supervisor,
            timeout_s=3600,
            on_report=lambda _o: arrivals.append(time.perf_counter()),
        )
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(supervisor) - cpu_before
        restarts = dict(supervisor.restarts)
    if len(outcomes) < tasks:
        raise SystemExit(f"{workers} workers: {len(outcomes)} of {tasks} reported")
    skip = len(arrivals) // 4
    steady = (len(arrivals) - 1 - skip) / (arrivals[-1] - arrivals[skip]) if tasks > 4 else None
    values: list[TaskOutcome] = list(outcomes.values())
    return {
        "workers_per_node": workers,
        "processes": workers * 5,
        "partitions": partitions_for(workers),
        "tasks": tasks,
        "warmup_tasks": warmup,
        "ready_s": round(ready_s, 1),
        "seconds": round(elapsed, 2),
        "tasks_per_s": round(tasks / elapsed, 3),
        "steady_tasks_per_s": round(steady, 3) if steady else None,
        "worker_cpu_s_per_task": round(cpu / tasks, 3),
        "worker_cpu_cores_busy": round(cpu / elapsed, 2),
        "passed": sum(o.passed for o in values),
        "mean_attempts": round(sum(o.attempts for o in values) / len(values), 2),
        "restarts": restarts,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def series(
    base: Settings, workers: list[int], tasks: int, warmup: int, label: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in workers:
        console.print(f"[bold]{label}[/]: {n} worker(s) per node, {tasks} tasks...")
        row = measure(base, n, tasks, warmup)
        row["ratio_to_1_worker"] = (
            round(row["tasks_per_s"] / rows[0]["tasks_per_s"], 2) if rows else 1.0
        )
        if rows and row["steady_tasks_per_s"] and rows[0]["steady_tasks_per_s"]:
            row["steady_ratio_to_1_worker"] = round(
                row["steady_tasks_per_s"] / rows[0]["steady_tasks_per_s"], 2
            )
        console.print(
            f"  {row['tasks_per_s']:.2f} tasks/s (x{row['ratio_to_1_worker']:.2f}), "
            f"steady {row['steady_tasks_per_s']}, {row['worker_cpu_s_per_task']} CPU s/task, "
            f"load {row['load_average_after']}"
        )
        rows.append(row)
    return rows


def chart(report: dict[str, Any], path: Path) -> None:
    with saved_figure(path, 1, 1, figsize=(6.4, 4.2)) as (_fig, ax):
        rows = report["latency_bound"]["rows"]
        xs = [r["workers_per_node"] for r in rows]
        base = rows[0]["tasks_per_s"]
        ax.plot(xs, [x * base for x in xs], "k:", label="ideal (linear)")
        ax.plot(xs, [r["tasks_per_s"] for r in rows], "o-", label="scripted, delay "
                f"{report['latency_bound']['delay_s']} s/call: end to end")  # fmt: skip
        steady = [r["steady_tasks_per_s"] for r in rows]
        if all(steady):
            ax.plot(xs, steady, "s--", label="scripted: steady state")
        local = report.get("local_model", {}).get("rows") or []
        if local:
            ax.plot(
                [r["workers_per_node"] for r in local],
                [r["tasks_per_s"] for r in local],
                "^-",
                label="local 0.5B model (one llama.cpp server)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("worker processes per node")
        ax.set_ylabel("tasks / s")
        ax.set_title("Distributed mesh scale-out (2-core VM)")
        ax.legend(fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker processes per node")
    parser.add_argument("--tasks", type=int, default=96, help="timed tasks per configuration")
    parser.add_argument("--delay", type=float, default=0.5, help="scripted model: s per call")
    parser.add_argument("--local-workers", default="1,2", help="'' to skip the local model")
    parser.add_argument("--local-tasks", type=int, default=4)
    parser.add_argument("--name", default="scale_out", help="results/<name>.json and .png")
    args = parser.parse_args()
    run = begin(**vars(args))
    workers = [int(x) for x in args.workers.split(",") if x]
    local_workers = [int(x) for x in args.local_workers.split(",") if x]

    report: dict[str, Any] = {"benchmark": "scale_out"}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="aimesh-scale-") as tmp:
        base = Settings(
            llm="scripted",
            scripted_delay_s=args.delay,
            data_dir=Path(tmp),
            kafka_bootstrap=broker.bootstrap,
            kafka_config=dict(FAST_GROUPS),
            memory=MemorySettings(enabled=False),
        )
        rows = series(base, workers, args.tasks, warmup=max(workers), label="scripted")
        report["latency_bound"] = {
            "model": "scripted TEST DOUBLE, fixed delay per call (sleep, no CPU)",
            "delay_s": args.delay,
            "rows": rows,
            "goals": {"4": 3.5, "8": 6.0},
        }
        if local_workers:
            local = base.model_copy(update={"llm": "local", "scripted_delay_s": 0.0})
            with shared_llm_endpoint(local) as served:
                rows = series(served, local_workers, args.local_tasks, warmup=1, label="local")
            report["local_model"] = {
                "model": model_label(local),
                "server": "one llama.cpp server shared by every worker",
                "rows": rows,
            }
    path = write_result(args.name, report, run)
    chart(report, RESULTS_DIR / f"{args.name}.png")

    table = Table(title="Distributed mesh scale-out")
    for column in (
        "model",
        "workers/node",
        "tasks",
        "tasks/s",
        "x 1 worker",
        "steady x",
        "CPU s/task",
    ):
        table.add_column(column)
    for key in ("latency_bound", "local_model"):
        for r in report.get(key, {}).get("rows", []):
            table.add_row(
                key, str(r["workers_per_node"]), str(r["tasks"]), f"{r['tasks_per_s']:.2f}",
                f"x{r['ratio_to_1_worker']:.2f}", str(r.get("steady_ratio_to_1_worker", "-")),
                f"{r['worker_cpu_s_per_task']:.2f}",
            )  # fmt: skip
    console.print(table)
    console.print(f"written to {path} and {args.name}.png")


if __name__ == "__main__":
    main()
