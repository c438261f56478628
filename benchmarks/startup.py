"""Start-up of the `aimesh` command line: whole-process wall time against a bare interpreter.

    .venv/bin/python -m benchmarks.startup [--runs 5] [--baseline REF]

Times, as a whole process (spawn to exit), `python -c pass` (the baseline of the same run),
`aimesh --help`, `aimesh run -n 3 --llm scripted` (embedded broker, memory on) and
`aimesh memory list`, interleaved round by round so that drifting load hits all alike; with
`--baseline REF` also the same commands from commit REF's tree (before/after in one run). Each
command is then run once under `python -X importtime` and its import time summed per top-level
package (the profile that explains a figure). Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import ROOT, begin, tree_of, write_result

console = Console()

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "aimesh --help": ["-m", "app.cli.main", "--help"],
    "aimesh run -n 3 --llm scripted": [
        "-m",
        "app.cli.main",
        "run",
        "-n",  # `--tasks` before the CLI named every "how many" `--count`; `-n` in both
        "3",
        "--llm",
        "scripted",
    ],
    "aimesh memory list": ["-m", "app.cli.main", "memory", "list"],
}
GOALS_S = {
    "aimesh --help": 0.5,
    "aimesh run -n 3 --llm scripted": 5.0,
    "aimesh memory list": 3.0,
}


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
        [sys.executable, *args], cwd=tree, env=env,
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
        [sys.executable, "-X", "importtime", *args], cwd=tree, env=env,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument("--baseline", help="also measure the tree of this commit (e.g. main)")
    args = parser.parse_args()
    run = begin(runs=args.runs, baseline=args.baseline, commands=COMMANDS)

    with tempfile.TemporaryDirectory(prefix="aimesh-startup-") as tmp:
        trees = {"after": ROOT}
        if args.baseline:
            trees = {"before": tree_of(args.baseline, Path(tmp) / "before"), **trees}
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
        "baseline_commit": args.baseline,
        "goals_s": GOALS_S,
    }
    for label in trees:
        bare = statistics.median(walls[label]["python -c pass"])
        rows: dict[str, Any] = {}
        for name in COMMANDS:
            median = statistics.median(walls[label][name])
            rows[name] = {
                **summary(walls[label][name]),
                "ratio_to_bare_python": round(median / bare, 1),
                "peak_rss_mb": round(max(peaks[label][name]), 1),
                "goal_s": GOALS_S.get(name),
                "goal_met": median <= GOALS_S[name] if name in GOALS_S else None,
                "import_profile": profiles[label][name],
            }
        report[label] = rows
    path = write_result("startup", report, run)

    table = Table(title=f"aimesh start-up, whole process, median of {args.runs} (s)")
    table.add_column("command")
    for label in trees:
        table.add_column(f"{label} s", justify="right")
        table.add_column(f"{label} xbare", justify="right")
    table.add_column("goal")
    for name in COMMANDS:
        cells = []
        for label in trees:
            row = report[label][name]
            cells += [f"{row['median_s']:.2f}", f"x{row['ratio_to_bare_python']:.0f}"]
        goal = report["after"][name]
        mark = (
            ""
            if goal["goal_s"] is None
            else f"≤ {goal['goal_s']} s: {'met' if goal['goal_met'] else 'MISSED'}"
        )
        table.add_row(name, *cells, mark)
    console.print(table)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
