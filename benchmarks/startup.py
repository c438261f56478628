"""Start-up of the `aimesh` command line: whole-process wall time against a bare interpreter.

    .venv/bin/python -m benchmarks.startup [--runs 5] [--baseline REF_OR_TREE]

Times, as a whole process (spawn to exit), `python -c pass` (the baseline of the same run),
`aimesh --help`, `aimesh run -n 3 --llm scripted` (embedded broker, memory on),
`aimesh run --distributed --workers 2 -n 6 --llm scripted` (10 worker processes, memory on: a
shared Chroma server) and `aimesh memory list`, interleaved round by round so that drifting load
hits all alike; with `--baseline` also the same commands from another tree, before/after in one
run, with the same interpreter and venv: a commit (REF, extracted with `git archive`) or a
directory holding one (e.g. a `git worktree add` of it). Each command is then run once under
`python -X importtime` and its import time summed per top-level package (the profile that
explains a figure). Peak RSS is the largest of the process and the children it waited for.
Writes benchmarks/results/startup.json, each goal with whether it was met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import ROOT, begin, tree_of, write_result

console = Console()

AIMESH = "<aimesh>"
"""Stands for the tree's `aimesh` console script (its `[project.scripts]` entry, run as the
script pip generates would run it), so `aimesh --help` is timed as a user's shell runs it."""
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "aimesh --help": [AIMESH, "--help"],
    # `--tasks` before the CLI named every "how many" `--count`; `-n` in both
    "aimesh run -n 3 --llm scripted": [AIMESH, *["run", "-n", "3", "--llm", "scripted"]],
    "aimesh run --distributed --workers 2 -n 6 --llm scripted": [
        AIMESH,
        *["run", "--distributed", "--workers", "2", "-n", "6", "--llm", "scripted"],
    ],
    "aimesh memory list": [AIMESH, "memory", "list"],
}
GOALS_S = {
    "aimesh run -n 3 --llm scripted": 5.0,
    "aimesh run --distributed --workers 2 -n 6 --llm scripted": 30.0,
    "aimesh memory list": 1.0,
}
"""Wall-time goals (median, seconds), issue 28."""
GOALS_RATIO = {"aimesh --help": 1.5}
"""Goals as a ratio to the same run's bare `python -c pass` (median over median)."""
GOALS_RSS_MB = {"aimesh run -n 3 --llm scripted": 300.0}
"""Peak-RSS goals (MiB, the largest of the runs)."""


def console_script(tree: Path) -> list[str]:
    """Interpreter arguments that run `tree`'s `aimesh` entry point (`module:function`)."""
    entry = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]["aimesh"]
    module, function = entry.split(":")
    return ["-c", f"import sys; sys.argv[0] = 'aimesh'; from {module} import {function}; "
            f"sys.exit({function}())"]  # fmt: skip


def python_args(command: list[str], tree: Path) -> list[str]:
    """`command` with the `aimesh` placeholder replaced by `tree`'s console script."""
    return [*console_script(tree), *command[1:]] if command[:1] == [AIMESH] else command


def environment(tree: Path, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "AIMESH_DATA_DIR": str(data_dir),
        "COLUMNS": "100",
    }


def timed(args: list[str], tree: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *python_args(args, tree)], cwd=tree, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def import_profile(
    args: list[str], tree: Path, env: dict[str, str], top: int = 12
) -> dict[str, Any]:
    """Import time (self, summed per top-level package) of one run under -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *python_args(args, tree)], cwd=tree, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    per_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        per_package[parts[2].strip().split(".")[0]] += int(parts[0])
    return {
        "total_ms": round(sum(per_package.values()) / 1000, 1),
        "modules_imported": sum(1 for line in done.stderr.splitlines() if "|" in line) - 1,
        "top_packages_ms": {k: round(v / 1000, 1) for k, v in per_package.most_common(top)},
        "note": "-X importtime inflates absolute times; read the shares",
    }


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "samples_s": [round(x, 3) for x in samples],
    }


def goals_of(name: str, median_s: float, ratio: float, peak_mb: float) -> dict[str, Any]:
    """The command's goals, each with whether it was met: `goal_s`/`goal_met` (wall time), and
    `goals`, every goal as (what, met)."""
    goals: list[tuple[str, bool]] = []
    if name in GOALS_S:
        goals.append((f"≤ {GOALS_S[name]} s", median_s <= GOALS_S[name]))
    if name in GOALS_RATIO:
        goals.append((f"≤ x{GOALS_RATIO[name]} bare python", ratio <= GOALS_RATIO[name]))
    if name in GOALS_RSS_MB:
        goals.append((f"≤ {GOALS_RSS_MB[name]:.0f} MiB", peak_mb <= GOALS_RSS_MB[name]))
    return {
        "goal_s": GOALS_S.get(name),
        "goal_met": median_s <= GOALS_S[name] if name in GOALS_S else None,
        "goals": goals,
    }


def baseline_tree(baseline: str, into: Path) -> Path:
    """The tree to measure as "before": `baseline` itself when it is a directory (a worktree),
    else commit `baseline`'s tree extracted under `into`."""
    given = Path(baseline)
    return given.resolve() if given.is_dir() else tree_of(baseline, into)


def baseline_commit(baseline: str | None, tree: Path | None) -> str | None:
    """What "before" was: the commit a baseline directory has checked out, else the ref."""
    if baseline is None or tree is None or not Path(baseline).is_dir():
        return baseline
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument(
        "--baseline", help="also measure this commit's tree (e.g. main), or this directory's"
    )
    args = parser.parse_args()
    run = begin(runs=args.runs, baseline=args.baseline, commands=COMMANDS)

    with tempfile.TemporaryDirectory(prefix="aimesh-startup-") as tmp:
        trees = {"after": ROOT}
        if args.baseline:
            trees = {"before": baseline_tree(args.baseline, Path(tmp) / "before"), **trees}
        envs = {
            label: environment(tree, Path(tmp) / f"data-{label}") for label, tree in trees.items()
        }
        walls: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        peaks: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        for round_ in range(args.runs):
            console.print(f"round {round_ + 1}/{args.runs}")
            for label, tree in trees.items():
                for name, command in COMMANDS.items():
                    wall, peak = timed(command, tree, envs[label])
                    walls[label].setdefault(name, []).append(wall)
                    peaks[label].setdefault(name, []).append(peak)
        profiles = {
            label: {
                name: import_profile(command, tree, envs[label])
                for name, command in COMMANDS.items()
            }
            for label, tree in trees.items()
        }

    report: dict[str, Any] = {
        "benchmark": "startup",
        "method": "whole process, spawn to exit (perf_counter around fork/exec/wait4), "
        "interleaved rounds; peak RSS from wait4; -X importtime once per command",
        "baseline_commit": baseline_commit(args.baseline, trees.get("before")),
        "goals_s": GOALS_S,
        "goals_ratio_to_bare_python": GOALS_RATIO,
        "goals_peak_rss_mb": GOALS_RSS_MB,
    }
    for label in trees:
        bare = statistics.median(walls[label]["python -c pass"])
        rows: dict[str, Any] = {}
        for name in COMMANDS:
            median = statistics.median(walls[label][name])
            peak = max(peaks[label][name])
            rows[name] = {
                **summary(walls[label][name]),
                "ratio_to_bare_python": round(median / bare, 2),
                "peak_rss_mb": round(peak, 1),
                **goals_of(name, median, median / bare, peak),
                "import_profile": profiles[label][name],
            }
        report[label] = rows
    path = write_result("startup", report, run)

    table = Table(title=f"aimesh start-up, whole process, median of {args.runs} (s)")
    table.add_column("command")
    for label in trees:
        table.add_column(f"{label} s", justify="right")
        table.add_column(f"{label} xbare", justify="right")
        table.add_column(f"{label} MiB", justify="right")
    table.add_column("goals (after)")
    for name in COMMANDS:
        cells = []
        for label in trees:
            row = report[label][name]
            cells += [
                f"{row['median_s']:.2f}",
                f"x{row['ratio_to_bare_python']:.1f}",
                f"{row['peak_rss_mb']:.0f}",
            ]
        marks = [
            f"{goal}: {'met' if met else 'MISSED'}" for goal, met in report["after"][name]["goals"]
        ]
        table.add_row(name, *cells, "; ".join(marks))
    console.print(table)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
