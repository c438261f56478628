"""The mesh's state: one task travelling through producer, consumer, sandbox, reviewer, supervisor."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Field

from graph.selection import Candidate, choose_by_written_tests
from sandbox.base import ExecutionResult

Status = Literal["new", "solving", "tested", "reviewed", "done", "failed"]

FeedbackMode = Literal["hidden_counts", "public", "oracle"]
"""What a retry is told and what ends the loop.

- hidden_counts (the product's loop): public failures in full, of hidden tests only counts and
  error types; the loop ends when the verdict (hidden tests) passes.
- public (honest evaluation): public failures only; the loop ends when the public tests pass, and
  the answer submitted is chosen on public results: nothing from a hidden test reaches the model
  or decides what is submitted.
- oracle: the hidden tests' failures in full (inputs and expected values); ends on the verdict.
  An "oracle feedback" figure: never to be held against a single-shot one.
"""


class Task(BaseModel):
    """A programming task: statement, signature, independent tests, category and difficulty."""

    task_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    statement: str
    signature: str = Field(
        description="the function signature, e.g. `def add(a: int, b: int) -> int`"
    )
    entry_point: str
    tests: list[str] = Field(
        description="public tests: independent snippets, usually one assert each; their failures "
        "are shown to the consumer on a retry"
    )
    hidden_tests: list[str] = Field(
        default_factory=list,
        description="hidden tests: they decide the verdict and the reward, and a retry sees only "
        "how many passed and their error types (never an input or an expected value)",
    )
    setup: str = Field("", description="code run before the tests (imports, helpers)")
    category: str = "general"
    difficulty: int = Field(1, ge=1, le=10)
    source: str = "producer"
    reference_solution: str | None = None

    @property
    def verdict_tests(self) -> list[str]:
        """The tests that decide pass or fail: the hidden ones, or the public ones if none."""
        return self.hidden_tests or self.tests

    @property
    def all_tests(self) -> list[str]:
        """Public and hidden tests (what a reference solution is validated against)."""
        return [*self.tests, *self.hidden_tests]


class Attempt(BaseModel):
    """One consumer attempt and what the sandbox made of it."""

    number: int
    code: str
    execution: ExecutionResult | None = None
    """The verdict: the run on the task's verdict tests (hidden ones when it has them)."""
    hidden: bool = False
    """Whether the verdict ran hidden tests (then a retry sees only their counts)."""
    public: ExecutionResult | None = None
    """The run on the public tests, when the verdict ran hidden ones (None if the task has no
    public tests)."""
    tokens: int = 0
    latency_ms: float = 0.0
    reply: str = ""
    """The model's raw answer the code was extracted from (to measure extraction losses)."""
    written_passed: list[int] | None = None
    """Which of the model-written tests (by index) it passed (None when none were written)."""

    def feedback(self, mode: FeedbackMode = "hidden_counts") -> str:
        """What a retry may be told: the public tests' failures in full; of hidden tests only
        how many passed and their error types (`hidden_counts`), nothing (`public`), or
        everything (`oracle`: inputs and expected values included)."""
        if self.execution is None:
            return ""
        if not self.hidden or mode == "oracle":
            return self.execution.feedback()
        public = self.public.feedback() if self.public is not None else "No public tests."
        if mode == "public":
            return public or "The public tests passed."
        return f"{public}\n{hidden_summary(self.execution)}"

    @property
    def public_passed(self) -> bool:
        """Whether the public tests passed (the verdict's tests when nothing is hidden; False
        when no public run was made)."""
        if not self.hidden:
            return bool(self.execution and self.execution.passed)
        return bool(self.public and self.public.passed)

    @property
    def public_run(self) -> ExecutionResult | None:
        """The run on the public tests (the verdict's run when nothing is hidden)."""
        return self.public if self.hidden else self.execution

    def test_counts(self) -> str:
        """How many tests passed, public and hidden apart: `2/2 public, 1/1 hidden` (`1/3
        public` when nothing is hidden; empty when the code was not tested)."""
        parts = []
        public = self.public_run
        if public is not None and public.tests_total:
            parts.append(f"{public.tests_passed}/{public.tests_total} public")
        if self.hidden and self.execution is not None:
            parts.append(f"{self.execution.tests_passed}/{self.execution.tests_total} hidden")
        return ", ".join(parts)

    @property
    def public_score(self) -> int:
        """How many public tests passed (what a public-only selection may compare)."""
        return self.public_run.tests_passed if self.public_run is not None else 0

    def as_candidate(self) -> Candidate:
        """This attempt as a candidate of a public-only selection (its public run, whether the
        code loads, the model-written tests it passed)."""
        run = self.public_run
        return Candidate(
            self.code,
            run.tests_passed if run else 0,
            run.tests_total if run else 0,
            loads=run is not None and run.error_type is None,
            written_passed=frozenset(self.written_passed or ()),
        )


def hidden_summary(result: ExecutionResult) -> str:
    """Of a hidden-test run, only what a retry may see: counts and error types."""
    if result.error_type and not result.failures:
        return f"Hidden tests: not run ({result.error_type})."
    kinds = sorted({f.error_type for f in result.failures})
    failing = f"; failures: {', '.join(kinds)}" if kinds else ""
    return f"Hidden tests: {result.tests_passed}/{result.tests_total} passed{failing}."


def merge_versions(left: dict[str, str], right: dict[str, str]) -> dict[str, str]:
    """Reducer: the prompt versions a run used, by prompt name (a node adds the ones it used)."""
    return {**left, **right}


def merge_attempts(left: list[Attempt], right: list[Attempt]) -> list[Attempt]:
    """Reducer: an attempt with a known number replaces it (sandbox adds its result); new ones append."""
    merged = {a.number: a for a in left}
    for attempt in right:
        attempt = Attempt.model_validate(attempt)
        merged[attempt.number] = attempt
    return [merged[n] for n in sorted(merged)]


class ReviewScores(BaseModel):
    """The reward's components, each 0..1."""

    correctness: float = 0.0
    efficiency: float = 0.0
    readability: float = 0.0
    adherence: float = 0.0


class Review(BaseModel):
    """The reviewer's verdict on the answer submitted."""

    reward: float = Field(ge=0.0, le=1.0)
    scores: ReviewScores
    critique: str
    findings: list[str] = Field(default_factory=list)


class Report(BaseModel):
    """The supervisor's audit of a finished task."""

    verdict: Literal["ok", "warn", "flag"]
    findings: list[str] = Field(default_factory=list)
    summary: str
    wall_time_s: float = 0.0
    tokens_used: int = 0


class BatchAudit(BaseModel):
    """The supervisor's audit of a whole batch: pass rate, reward trend, anomalies, budget."""

    batch_id: str
    tasks: int
    pass_rate: float
    mean_reward: float
    reward_trend: float = Field(description="least-squares slope of the reward per task")
    tokens_used: int
    wall_time_s: float
    anomalies: list[str]
    verdict: Literal["ok", "warn", "flag"]
    summary: str


class MeshState(BaseModel):
    """Graph state. Nodes return partial updates; `attempts` and `tokens_used` accumulate."""

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    task_index: int = Field(0, description="position of this task in a batch (drives difficulty)")
    task: Task | None = None
    max_attempts: int = Field(3, ge=1, le=10, description="consumer attempts before review")
    attempts: Annotated[list[Attempt], merge_attempts] = Field(default_factory=list)
    review: Review | None = None
    report: Report | None = None
    prompt_versions: Annotated[dict[str, str], merge_versions] = Field(default_factory=dict)
    tokens_used: Annotated[int, operator.add] = 0
    memory_hits: Annotated[int, operator.add] = 0
    status: Status = "new"
    error: str | None = None
    started_at: float | None = None
    feedback: FeedbackMode = Field(
        "hidden_counts", description="what a retry is told and what ends the loop (FeedbackMode)"
    )
    written_tests: list[str] | None = Field(
        None,
        description="tests the model wrote for a task with no public test under `public` "
        "feedback (CodeT): every attempt runs them and they choose the answer submitted, never "
        "the verdict; [] when the reply held none usable, None when none were asked for",
    )

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def submitted(self) -> Attempt | None:
        """The answer the loop submits: the last attempt; with `public` feedback, chosen without
        a hidden test: by CodeT's dual agreement with the model-written tests when there are
        some, else the first attempt that passed the public tests, else the one passing most of
        them (the earliest on a tie)."""
        judged = [a for a in self.attempts if a.execution is not None]
        if self.feedback != "public" or not judged:
            return self.last_attempt
        if self.written_tests:
            return judged[choose_by_written_tests([a.as_candidate() for a in judged])]
        passing = [a for a in judged if a.public_passed]
        if passing:
            return passing[0]
        return max(judged, key=lambda a: (a.public_score, -a.number))

    @property
    def passed(self) -> bool:
        """The verdict (hidden tests) on the submitted answer."""
        chosen = self.submitted
        return bool(chosen and chosen.execution and chosen.execution.passed)


class TaskOutcome(BaseModel):
    """One row of a batch's results."""

    index: int
    task_id: str
    entry_point: str = "-"
    category: str
    difficulty: int
    attempts: int
    first_attempt_passed: bool
    passed: bool
    submitted_attempt: int = 0
    reward: float
    verdict: str
    tokens: int
    seconds: float
    memory_hits: int = 0
    error: str | None = None

    @classmethod
    def of(cls, index: int, state: MeshState, seconds: float) -> TaskOutcome:
        first = state.attempts[0].execution if state.attempts else None
        return cls(
            index=index,
            task_id=state.task.task_id if state.task else "-",
            entry_point=state.task.entry_point if state.task else "-",
            category=state.task.category if state.task else "-",
            difficulty=state.task.difficulty if state.task else 0,
            attempts=len(state.attempts),
            first_attempt_passed=bool(first and first.passed),
            passed=state.passed,
            submitted_attempt=state.submitted.number if state.submitted else 0,
            reward=state.review.reward if state.review else 0.0,
            verdict=state.report.verdict if state.report else "-",
            tokens=state.tokens_used,
            seconds=round(seconds, 3),
            memory_hits=state.memory_hits,
            error=state.error,
        )


def _reducers() -> dict[str, Callable[[Any, Any], Any]]:
    """Each reduced field of MeshState and its reducer, read from the `Annotated` declarations
    that LangGraph reads too (so the graph and the workers merge updates alike)."""
    hints = get_type_hints(MeshState, include_extras=True)
    return {
        name: get_args(hint)[1] for name, hint in hints.items() if get_origin(hint) is Annotated
    }


REDUCED_FIELDS = _reducers()


def apply_update(state: MeshState, update: dict[str, Any]) -> MeshState:
    """Merge a node's partial update into a state exactly as the graph's reducers do."""
    values = {name: getattr(state, name) for name in MeshState.model_fields}
    for key, value in update.items():
        reducer = REDUCED_FIELDS.get(key)
        values[key] = reducer(values[key], value) if reducer else value
    return MeshState.model_validate(values)
