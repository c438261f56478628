"""Run the benchmarks one after another (`make bench`); each writes its own JSON in results/.

    .venv/bin/python -m benchmarks.run_all [--with-model] [--only NAME ...]

The default set needs no model and takes a few minutes. `--with-model` adds those that run the
local model (producer diversity, memory ablation, learning curve, full HumanEval): about two
hours on an idle 2-core machine. Run on an otherwise idle machine; the benchmarks themselves
compare against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from benchmarks.common import begin, stamp

console = Console()

HUMANEVAL_REPORT = "benchmarks/results/humaneval_protocol_0.5b.json"
# One entry per row group of the README's infrastructure table, with the flags that row needs.
INFRASTRUCTURE: dict[str, list[str]] = {
    "startup": [
        "-m",
        "benchmarks.startup",
        "--baseline",
        "545279a",
    ],  # the tree before lazy start-up
    "sandbox_overhead": ["-m", "benchmarks.sandbox_overhead"],
    "docker_overhead": ["-m", "benchmarks.docker_overhead"],  # needs a Docker engine
    "kafka_edges": [
        "-m",
        "benchmarks.kafka_edges",
        "--scripted-mesh",
        "1,2,4",
        "--baseline",
        "dc20787",
    ],  # the tree before batched edge hops
    "scale_out": ["-m", "benchmarks.scale_out"],
    # a short soak (bounded at 150 s + start-up); the full 200-task one is `python -m benchmarks.soak`
    "soak": ["-m", "benchmarks.soak", "--tasks", "40", "--timeout", "150", "--name", "soak_quick"],
    "broker_recovery": ["-m", "benchmarks.broker_recovery"],
    "telemetry_overhead": ["-m", "benchmarks.telemetry_overhead"],
    "memory_latency": ["-m", "benchmarks.memory_latency"],
}
WITH_MODEL: dict[str, list[str]] = {
    "producer_diversity": ["-m", "benchmarks.producer_diversity"],
    "memory_ablation": ["-m", "benchmarks.memory_ablation"],
    "learning_curve": ["-m", "benchmarks.learning_curve", "--test", "12"],
    "humaneval": [
        "-m",
        "app.cli.main",
        "eval",
        "--llm",
        "local",
        "--attempts",
        "3",
        "--oracle-limit",
        "40",
        "--json",
        HUMANEVAL_REPORT,
    ],
    "humaneval_chart": ["-m", "benchmarks.humaneval_protocol_chart", HUMANEVAL_REPORT],
}
# Results files written by a program that is not a benchmark: stamped with the run record here.
STAMPED: dict[str, Path] = {"humaneval": Path(HUMANEVAL_REPORT)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-model", action="store_true", help="also the local-model ones")
    parser.add_argument("--only", nargs="*", default=None, help="run just these benchmarks")
    args = parser.parse_args()
    chosen = {**INFRASTRUCTURE, **(WITH_MODEL if args.with_model or args.only else {})}
    if args.only:
        unknown = set(args.only) - chosen.keys()
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = {name: chosen[name] for name in args.only}
    failed = []
    for number, (name, command) in enumerate(chosen.items(), start=1):
        console.rule(f"[bold]{number}/{len(chosen)} {name}")
        started = time.perf_counter()
        run = begin(command=command)
        code = subprocess.call([sys.executable, *command])
        if code == 0 and name in STAMPED:
            stamp(STAMPED[name], run)
        status = "[green]ok" if code == 0 else f"[red]exit {code}"
        console.print(f"{name}: {status}[/] in {time.perf_counter() - started:.0f} s")
        if code != 0:
            failed.append(name)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
