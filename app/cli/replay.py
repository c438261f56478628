"""`aimesh replay TASK_ID`: a task's whole story read back from its topics."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

import typer
from rich.markup import escape
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text

from app.cli.common import BootstrapOption, broker_settings, console, fail
from app.task_story import StoryNotFoundError, TaskStory, read_story
from graph.state import Attempt


def replay_command(
    task_id: Annotated[str, typer.Argument(help="the task's id (or a run id)")],
    run: Annotated[
        str | None, typer.Option(help="which run of the task [default: the latest finished]")
    ] = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """A task's whole story read back from its topics: the task, each attempt's code and verdict,
    the review, the report.

    Reads `ai_topic`, `ai_solutions`, `ai_verified_solutions`, `ai_reviews` and `ai_reports` to
    their ends: the audit trail Kafka keeps (on a broker that keeps it: `aimesh broker` runs in
    memory).
    """
    settings = broker_settings(bootstrap)
    try:
        story = read_story(task_id, settings, run_id=run)
    except StoryNotFoundError as exc:
        raise fail(f"{exc.args[0]} at {settings.kafka_bootstrap}") from None
    print_story(story)


def print_story(story: TaskStory) -> None:
    """The story as a reader wants it: task, attempts, review, report, timeline."""
    reward = f", reward {story.review.reward:.2f}" if story.review else ""
    console.print(Rule(Text(f"task {story.task_id} (run {story.run_id}): {story.status}{reward}")))
    if story.other_runs:
        console.print(
            Text(f"other runs of this task: {', '.join(story.other_runs)} (--run to pick one)")
        )
    task = story.task
    if task is not None:
        console.print(
            Text(
                f"{task.entry_point} | category {task.category} | difficulty {task.difficulty} | "
                f"source {task.source} | {len(task.tests)} public, {len(task.hidden_tests)} hidden "
                "tests"
            )
        )
        console.print(Text(task.statement))
        console.print(Syntax(task.signature, "python", background_color="default"))
    for attempt in story.attempts:
        console.print(Rule(f"attempt {attempt.number}", align="left"))
        console.print(Syntax(attempt.code or "# (no code)", "python", background_color="default"))
        console.print(Text(f"verdict: {verdict(attempt)}"))
    if story.review is not None:
        scores = story.review.scores
        console.print(Rule("review", align="left"))
        console.print(
            Text(
                f"reward {story.review.reward:.2f} (correctness {scores.correctness:.2f}, "
                f"efficiency {scores.efficiency:.2f}, readability {scores.readability:.2f}, "
                f"adherence {scores.adherence:.2f})"
            )
        )
        console.print(Text(story.review.critique))
    if story.report is not None:
        console.print(Rule("report", align="left"))
        console.print(Text(f"verdict {story.report.verdict}: {story.report.summary}"))
        for finding in story.report.findings:
            console.print(Text(f"  - {finding}"))
    console.print(Rule("timeline", align="left"))
    for transition in story.transitions:
        message = transition.message
        when = message.produced_at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        console.print(
            f"{when}  {escape(message.source):<10} -> {transition.topic:<22} "
            f"attempt {message.attempt}",
            highlight=False,
        )


def verdict(attempt: Attempt) -> str:
    """The sandbox's verdict on an attempt, in a line (public and hidden tests apart)."""
    execution = attempt.execution
    if execution is None:
        return "not run"
    outcome = "passed" if execution.passed else "failed"
    detail = f" ({execution.error_type})" if execution.error_type else ""
    timed_out = ", timed out" if execution.timed_out else ""
    return f"{outcome}: {attempt.test_counts() or 'no tests'}{detail}{timed_out}"
