"""CodeT's choice (column (f) of `aimesh eval`) measured on a protocol report's stored
candidates: for each problem, one greedy call writes tests from the statement and signature
only, the K stored blind candidates of column (b) are run on them, and CodeT's dual agreement
picks one; its stored hidden verdict scores the pick. The same candidates as (b), so (f) - (b)
is paired and measures the choice alone. By default the problems without docstring examples
(no public test), where (b) has nothing public to choose by. Rows are kept as they finish, so
the same command resumes.

    .venv/bin/python -m benchmarks.codet_stored REPORT [--all] [--repeat-penalty 1.1] [--llm ...]
        [--fresh]

Writes benchmarks/results/codet_stored.json and .png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from app.cli.common import progress
from app.eval_protocol import codet_choice, publicly_judged
from app.services import build_context
from benchmarks.common import rate_bars, saved_figure
from benchmarks.paired_runs import (
    add_penalty_option,
    add_run_options,
    measure,
    paired_rates,
    rate,
    run_settings,
)
from benchmarks.resumable import ResumableRun
from graph.datasets import humaneval_tasks
from llm.chat import model_label

COLUMNS = {
    "greedy": "(a) greedy",
    "blind": "(b) blind, public choice",
    "codet": "(f) CodeT choice",
    "blind_any": "(b') pass@K, upper bound",
}

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a protocol report (`aimesh eval --json`)")
    parser.add_argument("--all", action="store_true", help="every problem, not only those "
                        "without public tests")  # fmt: skip
    add_penalty_option(parser)
    add_run_options(parser, "codet_stored")
    return parser.parse_args(argv)


def chosen_rows(report: Path, everything: bool) -> list[dict[str, Any]]:
    """The report's rows with K stored candidates (without public tests unless `everything`)."""
    rows = json.loads(report.read_text())["rows"]
    if rows and "candidates" not in rows[0]:
        raise SystemExit(f"{report} keeps no candidates (an eval made before they were stored)")
    return [
        r for r in rows
        if len(r["candidates"]) > 1 and (everything or r["public_tests"] == 0)
    ]  # fmt: skip


def run_choices(run: ResumableRun, rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """CodeT's pick among each row's stored candidates, a row per problem; the model's label."""
    context = build_context(run_settings(args, run.folder), use_memory=False)
    tasks = {t.task_id: t for t in humaneval_tasks()}
    with progress() as bars:
        bar = bars.add_task("CodeT on stored candidates", total=len(rows))
        for row in rows:
            key = f"problem/{row['task_id']}"
            if not run.done(key):
                task = tasks[row["task_id"]]
                if len(task.tests) != row["public_tests"]:
                    raise SystemExit(f"{row['task_id']}: public tests differ from the report's")
                candidates = publicly_judged(context, task, row["candidates"])
                chosen, usable, tokens = codet_choice(context, task, candidates)
                run.add(key, {
                    "kind": "problem", "index": row["index"], "task_id": row["task_id"],
                    "public_tests": row["public_tests"], "greedy": row["greedy"],
                    "blind": row["blind"], "blind_chosen": row["blind_chosen"],
                    "blind_any": row["blind_any"], "codet": row["candidates_hidden"][chosen],
                    "codet_chosen": chosen, "codet_tests": usable, "tokens": tokens,
                })  # fmt: skip
            bars.update(bar, advance=1)
    return model_label(context.settings)


def report(run: ResumableRun, model: str, source: Path) -> dict[str, Any]:
    """The columns with their intervals and CodeT's choice against (b)'s, paired."""
    rows = sorted(run.of_kind("problem"), key=lambda r: r["index"])
    column = {key: [bool(r[key]) for r in rows] for key in COLUMNS}
    return {
        "benchmark": "codet_stored",
        "title": f"CodeT's choice among the stored blind candidates, HumanEval, {model}",
        "report": str(source),
        "problems": len(rows),
        "columns": {key: {"label": label, **rate(column[key])} for key, label in COLUMNS.items()},
        "codet_minus_blind": paired_rates(column["blind"], column["codet"]),
        "choices_differ": sum(r["codet_chosen"] != r["blind_chosen"] for r in rows),
        "no_usable_test": sum(r["codet_tests"] == 0 for r in rows),
        "rows": rows,
        **run.record(),
    }


def chart(payload: dict[str, Any], path: Path) -> None:
    """Each column's pass@1 with its 95 % interval."""
    columns = payload["columns"]
    with saved_figure(path, figsize=(7, 4.2)) as (_, ax):
        rate_bars(ax, [c["label"] for c in columns.values()], {"pass@1": list(columns.values())})
        ax.set_ylabel("hidden tests passed (%)")
        ax.set_ylim(0, 100)
        d = payload["codet_minus_blind"]
        ax.set_title(f"{payload['title']}\nn={payload['problems']}; (f) - (b): "
                     f"{100 * d['difference']:+.1f} points, McNemar p={d['mcnemar_p']:.3f}",
                     fontsize=9)  # fmt: skip
        ax.tick_params(axis="x", labelsize=8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    rows = chosen_rows(args.report, args.all)
    payload, path = measure(
        args,
        lambda run: run_choices(run, rows, args),
        lambda run, model: report(run, model, args.report),
    )
    chart(payload, path.with_suffix(".png"))
    for figures in payload["columns"].values():
        console.print(f"{figures['label']}: {figures['solved']}/{figures['n']} {figures['ci95']}")
    console.print(f"(f) - (b): {payload['codet_minus_blind']}")
    console.print(f"written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
