"""`aimesh eval`: HumanEval (or any HumanEval-format dataset) through the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, progress, readable_errors, settings_with
from app.humaneval import evaluate, write_report
from app.services import build_context
from graph.builder import compile_mesh
from graph.checkpoint import sqlite_checkpointer
from graph.datasets import humaneval_tasks, load_tasks, task_id_of
from graph.runner import BatchRunner
from graph.state import Task, TaskOutcome
from nodes import NODE_FUNCTIONS


def evaluate_command(
    dataset: Annotated[
        str, typer.Option(help="humaneval, or a HumanEval-format JSONL")
    ] = "humaneval",
    limit: Annotated[int | None, typer.Option(min=1, help="first N problems")] = None,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="attempts per problem")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    llm: Annotated[str | None, typer.Option(help="auto | openai | local | scripted")] = None,
    resume: Annotated[str | None, typer.Option(help="batch id of an interrupted eval")] = None,
    memory: Annotated[
        bool,
        typer.Option(
            help="agents use their long-term memory store (off by default: a store that saw these "
            "problems before would make the scores dependent on earlier runs)"
        ),
    ] = False,
    retry: Annotated[
        str | None, typer.Option(help="retry strategy: repair | resample (AIMESH_RETRY_STRATEGY)")
    ] = None,
    ids: Annotated[
        str | None, typer.Option(help="only these problems, comma-separated (e.g. HumanEval/10)")
    ] = None,
) -> None:
    """Measure pass@1 (first attempt and loop) on HumanEval through the graph."""
    with readable_errors():
        settings = settings_with(
            llm=llm, review_with_llm=False, llm_temperature=0.0, retry_strategy=retry
        )
        tasks = humaneval_tasks() if dataset == "humaneval" else load_tasks(Path(dataset))
        tasks = _chosen(tasks, ids)
        tasks = tasks[:limit] if limit else tasks
        with sqlite_checkpointer(settings.checkpoint_db) as saver, progress() as bars:
            context = build_context(settings, use_memory=memory)
            runner = BatchRunner(compile_mesh(NODE_FUNCTIONS, saver), context, resume)
            bars.console.print(f"batch {runner.batch_id} (resume: --resume {runner.batch_id})")
            bar = bars.add_task("problems", total=len(tasks))
            solved = 0

            def on_done(outcome: TaskOutcome) -> None:
                nonlocal solved
                solved += outcome.passed
                bars.update(bar, advance=1, description=f"solved {solved}")

            summary, outcomes = evaluate(runner, tasks, attempts, on_done=on_done)
        table = Table(title=f"HumanEval ({summary.problems} problems, K={attempts})")
        for column in ("metric", "value"):
            table.add_column(column)
        for key, value in summary.model_dump().items():
            table.add_row(key, str(value))
        console.print(table)
        if json_out:
            write_report(json_out, summary, outcomes)
            console.print(f"report written to {json_out}")


def _chosen(tasks: list[Task], ids: str | None) -> list[Task]:
    """The tasks named by `--ids` (all when None); BadParameter for an unknown one."""
    if not ids:
        return tasks
    wanted = {task_id_of(i) for i in ids.split(",") if i.strip()}
    if missing := wanted - {t.task_id for t in tasks}:
        raise typer.BadParameter(f"unknown problem(s): {', '.join(sorted(missing))}")
    return [t for t in tasks if t.task_id in wanted]
