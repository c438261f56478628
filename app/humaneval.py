"""HumanEval through the loop: pass@1 of the first attempt and of the loop (retry with the
sandbox's error), seconds per problem, tokens, and a per-problem record."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graph.runner import BatchRunner
from graph.state import Task, TaskOutcome
from llm.chat import model_label


class EvalSummary(BaseModel):
    """The headline numbers of one evaluation run."""

    dataset: str
    problems: int
    attempts: int
    model: str
    memory: bool
    retry_strategy: str
    pass_at_1_first_attempt: float
    pass_at_1_loop: float
    solved_first_attempt: int
    solved_loop: int
    mean_attempts_solved: float
    seconds_per_problem: float
    tokens_per_problem: float
    memory_hits_per_problem: float
    total_seconds: float
    feedback: str = "sandbox errors from the task's tests are fed back to the model on retry"


def evaluate(
    runner: BatchRunner,
    tasks: list[Task],
    attempts: int,
    on_done: Callable[[TaskOutcome], None] | None = None,
) -> tuple[EvalSummary, list[TaskOutcome]]:
    """Run every task through the graph and summarise."""
    started = time.perf_counter()
    outcomes = []
    for index, task in enumerate(tasks):
        outcome = runner.run_task(index, task, max_attempts=attempts)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    context = runner.context
    summary = summarise(
        outcomes,
        attempts,
        model_label(context.settings),
        memory=context.memory is not None,
        retry_strategy=context.settings.retry_strategy,
        total_seconds=time.perf_counter() - started,
    )
    return summary, outcomes


def summarise(
    outcomes: list[TaskOutcome],
    attempts: int,
    model: str,
    *,
    memory: bool,
    retry_strategy: str,
    total_seconds: float,
    dataset: str = "humaneval",
) -> EvalSummary:
    """Aggregate per-problem outcomes."""
    n = len(outcomes) or 1
    solved = [o for o in outcomes if o.passed]
    first = sum(o.first_attempt_passed for o in outcomes)
    return EvalSummary(
        dataset=dataset,
        problems=len(outcomes),
        attempts=attempts,
        model=model,
        memory=memory,
        retry_strategy=retry_strategy,
        pass_at_1_first_attempt=round(first / n, 4),
        pass_at_1_loop=round(len(solved) / n, 4),
        solved_first_attempt=first,
        solved_loop=len(solved),
        mean_attempts_solved=round(statistics.mean(o.attempts for o in solved), 3)
        if solved
        else 0.0,
        seconds_per_problem=round(sum(o.seconds for o in outcomes) / n, 3),
        tokens_per_problem=round(sum(o.tokens for o in outcomes) / n, 1),
        memory_hits_per_problem=round(sum(o.memory_hits for o in outcomes) / n, 2),
        total_seconds=round(total_seconds, 1),
    )


def write_report(path: Path, summary: EvalSummary, outcomes: list[TaskOutcome]) -> None:
    """Summary, machine and per-problem records as one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "summary": summary.model_dump(),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "problems": [o.model_dump() for o in outcomes],
    }
    path.write_text(json.dumps(payload, indent=2))
