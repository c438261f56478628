"""A task's story read back from the mesh's topics: the task, each attempt's code and verdict, the
review and the report, with every transition in order (the audit trail Kafka keeps)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from foundation.settings import Settings
from graph.state import Attempt, Report, Review, Task
from graph.topics import AI_REPORTS, AI_REVIEWS, AI_SOLUTIONS, AI_TOPIC, AI_VERIFIED
from graph.wire import MODEL_BY_TOPIC, EdgeMessage, ReportMessage, ReviewMessage
from kafka_edges.reader import Record, TopicReader

STORY_TOPICS = (AI_TOPIC, AI_SOLUTIONS, AI_VERIFIED, AI_REVIEWS, AI_REPORTS)
"""The topics a task's transitions travel on, in the loop's order."""


class StoryNotFoundError(LookupError):
    """No transition of the task (or run) is on the topics."""


@dataclass(frozen=True)
class Transition:
    """One message of the story: where it travelled and what it carried."""

    topic: str
    message: EdgeMessage


@dataclass
class TaskStory:
    """One run of a task, as its messages tell it."""

    task_id: str
    run_id: str
    transitions: list[Transition]
    task: Task | None = None
    attempts: list[Attempt] = field(default_factory=list)
    review: Review | None = None
    report: Report | None = None
    status: str = "in progress"
    other_runs: list[str] = field(default_factory=list)


def story_of(records: Iterable[Record], wanted: str, run_id: str | None = None) -> TaskStory:
    """The story of task (or run) `wanted` in `records`: the run `run_id`, else the most recent
    run that has a report, else the most recent one."""
    runs: dict[str, list[Transition]] = {}
    for record in records:
        message = record.message
        if isinstance(message, EdgeMessage) and wanted in (message.task_id, message.run_id):
            topic = type(message).TOPIC
            runs.setdefault(message.run_id, []).append(Transition(topic, message))
    if run_id is not None and run_id not in runs:
        raise StoryNotFoundError(f"task {wanted!r} has no run {run_id!r} (runs: {', '.join(runs)})")
    if not runs:
        raise StoryNotFoundError(
            f"no message of task or run {wanted!r} on {', '.join(STORY_TOPICS)}"
        )

    def recency(run: str) -> tuple[bool, float]:
        finished = any(isinstance(t.message, ReportMessage) for t in runs[run])
        return finished, max(t.message.produced_at.timestamp() for t in runs[run])

    chosen = run_id or max(runs, key=recency)
    transitions = sorted(runs[chosen], key=lambda t: t.message.produced_at)
    story = TaskStory(
        task_id=transitions[-1].message.task_id,
        run_id=chosen,
        transitions=transitions,
        other_runs=sorted(r for r in runs if r != chosen),
    )
    attempts: dict[int, Attempt] = {}
    for transition in transitions:
        state = transition.message.state
        story.task = story.task or state.task
        last = state.last_attempt
        if last is not None and (last.execution is not None or last.number not in attempts):
            attempts[last.number] = last  # the code first, then the sandbox's verdict on it
        if isinstance(transition.message, ReviewMessage):
            story.review = state.review
        if isinstance(transition.message, ReportMessage):
            story.report, story.status = state.report, state.status
    story.attempts = [attempts[n] for n in sorted(attempts)]
    return story


def read_story(
    wanted: str, settings: Settings, *, run_id: str | None = None, timeout_s: float = 60.0
) -> TaskStory:
    """Read the story topics to their ends and tell the story of task (or run) `wanted`."""
    records: list[Record] = []
    for topic in STORY_TOPICS:
        with TopicReader(topic, settings, models=MODEL_BY_TOPIC) as reader:
            records.extend(reader.read_to_end(timeout_s=timeout_s))
    return story_of(records, wanted, run_id)
