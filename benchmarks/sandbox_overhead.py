"""What the local sandbox costs: a trivial passing job vs a bare start of the same interpreter.

    .venv/bin/python benchmarks/sandbox_overhead.py [--runs 30]

Both are measured in the same process, interleaved (bare, sandbox, bare, ...), so machine
load affects them alike. Writes benchmarks/results/sandbox_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sandbox import SandboxJob
from sandbox.local import LocalSandbox, sandbox_python

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox_overhead.json"
WARMUP = 3
JOB = SandboxJob(code="def add(a, b):\n    return a + b\n", tests=["assert add(1, 2) == 3"])


def timed_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": statistics.quantiles(samples, n=10)[-1],
        "mean_ms": statistics.fmean(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
    }


def machine(sandbox: LocalSandbox, python: str) -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    sandbox_python_version = subprocess.run(
        [python, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "host_python": platform.python_version(),
        "sandbox_python": f"{python} ({sandbox_python_version})",
        "isolation_tier": sandbox.isolation.tier,
        "bwrap": sandbox.isolation.bwrap,
        "bwrap_flags": list(sandbox.isolation.flags),
        "running_as_root": os.geteuid() == 0,
        "load_average_at_start": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    sandbox = LocalSandbox()
    python, _ = sandbox_python()
    bare_command = [python, "-c", "pass"]
    info = machine(sandbox, python)

    def bare() -> None:
        subprocess.run(bare_command, check=True)

    def sandboxed() -> None:
        result = sandbox.run(JOB)
        if not result.passed:
            raise SystemExit(f"the benchmark job failed in the sandbox: {result.feedback()}")

    for _ in range(WARMUP):
        bare()
        sandboxed()
    bare_ms: list[float] = []
    sandbox_ms: list[float] = []
    for _ in range(args.runs):
        bare_ms.append(timed_ms(bare))
        sandbox_ms.append(timed_ms(sandboxed))

    bare_stats, sandbox_stats = summary(bare_ms), summary(sandbox_ms)
    info["load_average_at_end"] = list(os.getloadavg())
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "warmup_runs": WARMUP,
        "machine": info,
        "bare": {"command": bare_command, **bare_stats, "samples_ms": bare_ms},
        "sandbox": {"job": JOB.model_dump(), **sandbox_stats, "samples_ms": sandbox_ms},
        "overhead_median_ms": sandbox_stats["median_ms"] - bare_stats["median_ms"],
        "overhead_p90_ms": sandbox_stats["p90_ms"] - bare_stats["p90_ms"],
        "ratio_median": sandbox_stats["median_ms"] / bare_stats["median_ms"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")

    table = Table(title=f"Sandbox overhead ({args.runs} interleaved runs, {info['cpus']} CPUs)")
    for column in ("", "median ms", "p90 ms", "min ms", "max ms"):
        table.add_column(column, justify="right" if column else "left")
    for label, stats in (
        (f"bare `{' '.join(bare_command)}`", bare_stats),
        (f"LocalSandbox ({sandbox.isolation.tier}), 1 test", sandbox_stats),
    ):
        table.add_row(
            label, *(f"{stats[key]:.1f}" for key in ("median_ms", "p90_ms", "min_ms", "max_ms"))
        )
    console = Console()
    console.print(table)
    console.print(
        f"overhead: {report['overhead_median_ms']:.1f} ms at the median "
        f"({report['ratio_median']:.2f}x), {report['overhead_p90_ms']:.1f} ms at p90; "
        f"written to {RESULTS}"
    )


if __name__ == "__main__":
    main()
