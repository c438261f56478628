"""Arms compared on the same tasks in one run: each task goes through every arm in turn (arms
interleaved, so a drift in machine load or a stop hits them alike), with the honest protocol of
`aimesh eval`'s column (c) — a retry sees the public tests' failures only, the loop stops on the
public tests and submits on them, the hidden tests decide the verdict — and each outcome is kept
as a row the moment it is known. Then the paired figures of two arms."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console

from app.cli.common import INFRASTRUCTURE_ERRORS, progress
from app.cli.learn import stop_on_sigterm
from app.stats import mcnemar_exact, paired_bootstrap_ci, wilson
from benchmarks.common import RESULTS_DIR, begin, llm_overrides, write_json
from benchmarks.resumable import RUNS_DIR, ResumableRun, resumable, run_arguments
from foundation.settings import Settings
from graph.runner import BatchRunner
from graph.state import Task, TaskOutcome
from learning.significance import paired_gain_p

Made = TypeVar("Made")


@dataclass
class Arm:
    """One way of running the tasks: its name and its graph runner (own batch id, services)."""

    name: str
    runner: BatchRunner


def run_interleaved(
    run: ResumableRun,
    tasks: Sequence[Task],
    arms: Sequence[Arm],
    attempts: int,
    after_task: Callable[[int], None] | None = None,
) -> None:
    """Every task through every arm (rows `task` keyed `<arm>/<index>`); tasks already stored
    are skipped. `after_task(index)` runs once all arms have finished task `index`."""
    with progress() as bars:
        bar = bars.add_task("tasks", total=len(tasks) * len(arms))
        for index, task in enumerate(tasks):
            for arm in arms:
                key = f"{arm.name}/{index}"
                if not run.done(key):
                    outcome = arm.runner.run_task(
                        index, task, max_attempts=attempts, feedback="public"
                    )
                    run.add(key, {"kind": "task", "arm": arm.name, **outcome.model_dump()})
                bars.update(bar, advance=1, description=_solved_line(run, arms))
            if after_task is not None:
                after_task(index)


def _solved_line(run: ResumableRun, arms: Sequence[Arm]) -> str:
    return ", ".join(f"{a.name} {sum(o.passed for o in outcomes(run, a.name))}" for a in arms)


def outcomes(run: ResumableRun, arm: str) -> list[TaskOutcome]:
    """The stored outcomes of one arm, in task order."""
    rows = [r for r in run.of_kind("task") if r["arm"] == arm]
    return [TaskOutcome.model_validate(r) for r in sorted(rows, key=lambda r: r["index"])]


def rate(values: Sequence[bool]) -> dict[str, Any]:
    """Solved of n, the rate and its Wilson 95 % interval."""
    solved, n = sum(values), len(values)
    low, high = wilson(solved, n)
    return {
        "solved": solved,
        "n": n,
        "rate": round(solved / n, 4) if n else 0.0,
        "ci95": (round(low, 4), round(high, 4)),
    }


def paired_rates(base: Sequence[bool], other: Sequence[bool]) -> dict[str, Any]:
    """`other` against `base` on the same problems: the difference of the rates with a paired
    bootstrap 95 % interval, the discordant problems, the exact McNemar p (two-sided) and the
    sign test's one-sided p that `other` is better."""
    only_base = sum(b and not o for b, o in zip(base, other, strict=True))
    only_other = sum(o and not b for b, o in zip(base, other, strict=True))
    n = len(base)
    interval = paired_bootstrap_ci(lambda b, o: float(np.mean(o) - np.mean(b)), base, other)
    return {
        "n": n,
        "only_base": only_base,
        "only_other": only_other,
        "difference": round((only_other - only_base) / n, 4) if n else 0.0,
        "ci95": tuple(round(x, 4) for x in interval) if interval else None,
        "mcnemar_p": round(mcnemar_exact(only_base, only_other), 4),
        "sign_test_p_one_sided": round(
            paired_gain_p([float(o) for o in other], [float(b) for b in base]), 4
        ),
    }


@contextmanager
def readable_failures() -> Iterator[None]:
    """Infrastructure failures (model server, sandbox, memory store) end the benchmark with one
    line on stderr and exit code 2; its rows so far stay for the next invocation."""
    try:
        yield
    except INFRASTRUCTURE_ERRORS as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


def protocol_settings(llm: str, base_url: str | None, data_dir: Path, **more: Any) -> Settings:
    """The settings of `aimesh eval`'s runs, for one arm's data dir: greedy first attempt (retries
    sample as the loop does), template critiques (an LLM critique does not change the reward)."""
    overrides = llm_overrides(llm, base_url) | more
    return Settings(
        **{"review_with_llm": False, "llm_temperature": 0.0, **overrides}, data_dir=data_dir
    )


def run_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    """`protocol_settings` for a harness that takes `add_penalty_option`: its model, endpoint and
    repetition penalty from `args`."""
    return protocol_settings(
        args.llm, args.base_url, data_dir, llm_repeat_penalty=args.repeat_penalty
    )


def add_run_options(parser: argparse.ArgumentParser, name: str) -> None:
    """The options every paired benchmark takes: its model, its run folder, where results go."""
    parser.add_argument("--llm", default="auto", help="auto | openai | local | scripted")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--run-dir", type=Path, default=RUNS_DIR / name)
    parser.add_argument("--fresh", action="store_true", help="discard the stored run")
    parser.add_argument("--name", default=name, help="results file name")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)


def add_penalty_option(parser: argparse.ArgumentParser) -> None:
    """`--repeat-penalty`: part of a run's arguments, so a run is resumed with the penalty it
    began with (default: the `llm_repeat_penalty` setting)."""
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=Settings().llm_repeat_penalty,
        help="the model's repetition penalty; runs begun before the setting existed had the "
        "server's 1.1",
    )


def measure(
    args: argparse.Namespace,
    execute: Callable[[ResumableRun], Made],
    summarise: Callable[[ResumableRun, Made], dict[str, Any]],
) -> tuple[dict[str, Any], Path]:
    """A paired benchmark's run: `execute` in the run folder of `args` (resumed when it holds
    rows), then `summarise` its rows into the payload written to `<results-dir>/<name>.json`
    with the run record; the payload and its path. A SIGTERM stops it cleanly (the segment is
    closed, the model server stopped)."""
    stop_on_sigterm()
    bench = begin(**run_arguments(args))
    with readable_failures(), resumable(args.run_dir, run_arguments(args), fresh=args.fresh) as run:
        made = execute(run)
    payload = summarise(run, made)
    return payload, write_json(args.results_dir / f"{args.name}.json", payload, bench)
