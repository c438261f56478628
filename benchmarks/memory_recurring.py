"""Memory on recurring work: the same frozen stream of the loop's own produced tasks (categories
recur: `benchmarks.task_stream`) through the loop without and with memory, task by task in one
run (interleaved), with the honest protocol (public feedback, hidden tests decide). The memory
arm starts from an empty store and keeps what the loop teaches it (fix recipes, practices).
Reports pass rates with Wilson intervals and attempts per solve with a paired bootstrap interval
of the relative change (goal: -20 %); rows are kept as they finish, so the same command resumes.

    .venv/bin/python -m benchmarks.memory_recurring [--stream FILE] [--limit N] [--attempts 3]
        [--llm auto|local|scripted] [--base-url URL] [--run-dir DIR] [--fresh]

Writes benchmarks/results/memory_recurring.json and .png.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from app.humaneval import EvalSummary, summarise
from app.services import build_context
from app.stats import paired_bootstrap_ci
from benchmarks.memory_ablation import chart
from benchmarks.paired_runs import (
    Arm,
    add_penalty_option,
    add_run_options,
    measure,
    outcomes,
    paired_rates,
    rate,
    run_interleaved,
    run_settings,
)
from benchmarks.resumable import ResumableRun
from benchmarks.task_stream import STREAM, load_stream
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.runner import BatchRunner
from graph.state import Task, TaskOutcome
from learning.significance import paired_gain_p
from llm.chat import model_label
from nodes import NODE_FUNCTIONS

ARMS = ("without_memory", "with_memory")
GOAL = -0.20
"""Issue #16: memory cuts attempts per solve on recurring tasks by at least 20 %."""

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", type=Path, default=STREAM, help="frozen produced tasks")
    parser.add_argument("--limit", type=int, default=None, help="first N tasks of the stream")
    parser.add_argument("--attempts", type=int, default=3, help="K: model calls per task")
    add_run_options(parser, "memory_recurring")
    add_penalty_option(parser)
    return parser.parse_args(argv)


def run_arms(run: ResumableRun, tasks: list[Task], args: argparse.Namespace) -> Settings:
    """Both arms over the stream; the settings of the arm without memory."""
    contexts = [
        build_context(
            run_settings(args, run.folder / arm),
            use_memory=arm != ARMS[0],
        )
        for arm in ARMS
    ]
    try:
        with run.checkpointer() as saver:
            graph = compile_mesh(NODE_FUNCTIONS, saver)
            arms = [Arm(a, BatchRunner(graph, c, a)) for a, c in zip(ARMS, contexts, strict=True)]
            run_interleaved(run, tasks, arms, args.attempts)
    finally:
        for context in contexts:
            if context.memory is not None:
                context.memory.close()
    return contexts[0].settings


def attempts_per_solve(arm: Sequence[TaskOutcome]) -> dict[str, Any]:
    """Mean attempts of the solved tasks, and all attempts spent per task solved."""
    solved = [o.attempts for o in arm if o.passed]
    return {
        "mean_attempts_solved": round(float(np.mean(solved)), 3) if solved else None,
        "attempts_spent_per_solve": round(sum(o.attempts for o in arm) / len(solved), 3)
        if solved
        else None,
    }


def _relative_attempts(a_att: Any, a_ok: Any, b_att: Any, b_ok: Any) -> float:
    """Relative change of the mean attempts of solved tasks, arm b against arm a."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((b_att @ b_ok / b_ok.sum()) / (a_att @ a_ok / a_ok.sum()) - 1)


def attempts_change(base: list[TaskOutcome], other: list[TaskOutcome]) -> dict[str, Any]:
    """The relative change of mean attempts per solve with its paired bootstrap interval, and a
    one-sided sign test (on the tasks both solved) that `other` needs fewer attempts."""
    samples = [[float(x) for x in values] for o in (base, other)
               for values in ([t.attempts for t in o], [t.passed for t in o])]  # fmt: skip
    both = [(b.attempts, o.attempts) for b, o in zip(base, other, strict=True)
            if b.passed and o.passed]  # fmt: skip
    interval = paired_bootstrap_ci(_relative_attempts, *samples)
    change = _relative_attempts(*(np.asarray(s) for s in samples))
    return {
        "relative_change": None if np.isnan(change) else round(change, 4),
        "ci95": tuple(round(x, 4) for x in interval) if interval else None,
        "solved_by_both": len(both),
        "sign_test_p_fewer_attempts": round(
            paired_gain_p([-o for _, o in both], [-b for b, _ in both]), 4
        ),
        "goal": GOAL,
        "goal_met": bool(not np.isnan(change) and change <= GOAL),
    }


def by_recurrence(arm: Sequence[TaskOutcome]) -> dict[str, Any]:
    """Pass rate and attempts of a category's first task in the stream against its later ones
    (where memory from the earlier ones can help)."""
    seen: set[str] = set()
    groups: dict[str, list[TaskOutcome]] = {"first_of_category": [], "recurring": []}
    for outcome in arm:
        groups["recurring" if outcome.category in seen else "first_of_category"].append(outcome)
        seen.add(outcome.category)
    return {
        name: {**rate([o.passed for o in group]), **attempts_per_solve(group)}
        for name, group in groups.items()
    }


def report(run: ResumableRun, settings: Settings, attempts: int, stream: Path) -> dict[str, Any]:
    """The results payload from the stored rows (tasks both arms finished)."""
    model = model_label(settings)
    per_arm = {arm: outcomes(run, arm) for arm in ARMS}
    n = min(len(v) for v in per_arm.values())
    base, other = (per_arm[arm][:n] for arm in ARMS)
    arms = {}
    for arm, values in zip(ARMS, (base, other), strict=True):
        summary = summarise(values, attempts, model, memory=arm != ARMS[0],
                            retry_strategy=settings.retry_strategy, total_seconds=sum(o.seconds for o in values),
                            dataset=stream.name)  # fmt: skip
        arms[arm] = {
            "summary": summary.model_dump(),
            "pass_rate": rate([o.passed for o in values]),
            "first_attempt": rate([o.first_attempt_passed for o in values]),
            **attempts_per_solve(values),
            "by_recurrence": by_recurrence(values),
        }
    return {
        "benchmark": "memory_recurring",
        "title": f"Memory on recurring produced tasks ({n} tasks, K={attempts}, {model})",
        "stream": str(stream),
        "tasks": n,
        "categories": sorted({o.category for o in base}),
        "arms": arms,
        "pass_rate_difference": paired_rates([o.passed for o in base], [o.passed for o in other]),
        "attempts_per_solve_change": attempts_change(base, other),
        **run.record(),
        "rows": {arm: [o.model_dump() for o in values] for arm, values in per_arm.items()},
    }


def show(payload: dict[str, Any]) -> None:
    table = Table(title=payload["title"])
    for column in ("arm", "pass rate (95 % CI)", "first attempt", "attempts/solve", "memory hits"):
        table.add_column(column)
    for arm, values in payload["arms"].items():
        p = values["pass_rate"]
        table.add_row(
            arm, f"{p['solved']}/{p['n']} {p['ci95']}", str(values["first_attempt"]["solved"]),
            str(values["mean_attempts_solved"]),
            str(values["summary"]["memory_hits_per_problem"]),
        )  # fmt: skip
    console.print(table)
    console.print(f"attempts per solve: {payload['attempts_per_solve_change']}")
    console.print(f"pass rate, with - without: {payload['pass_rate_difference']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    payload, path = measure(
        args,
        lambda run: run_arms(run, load_stream(args.stream, args.limit), args),
        lambda run, settings: report(run, settings, args.attempts, args.stream),
    )
    summaries = [EvalSummary.model_validate(a["summary"]) for a in payload["arms"].values()]
    chart(summaries, path.with_suffix(".png"), payload["title"])
    show(payload)
    console.print(f"written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
