"""The honest evaluation protocol: on each problem, in one run,

(a) the greedy first attempt (the graph's first attempt);
(b) blind best-of-K: K answers with no feedback (the greedy one and K-1 samples), the one submitted
    chosen on public information only (`graph.selection`); beside it the oracle pass@K (any of the K
    passes the hidden tests), an upper bound;
(c) the loop with public feedback only (`feedback="public"`: public failures shown, the loop stops
    on the public tests and submits on them), at most K model calls like (b); where a problem has
    no public test, K blind attempts and one test-writing call, the submission chosen by CodeT;
(d) the loop with the hidden tests' failures fed back, "oracle feedback", on the first
    `oracle_limit` problems (it continues the same greedy first attempt);
(e) optionally the first attempt with the model card's prompt shape (`completion`), greedy;
(f) optionally (`codet`) the same K blind candidates as (b), the one submitted chosen by CodeT's
    dual agreement with tests the model wrote from the statement and signature (one more call;
    the loop's own tests where it wrote some).

Each problem's row is appended to a JSONL file as soon as it is finished, so an interrupted run
continues with `--resume` (the graph runs also resume from their checkpoints).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, Field

from graph.context import MeshContext
from graph.runner import BatchRunner
from graph.selection import Candidate, choose, choose_by_written_tests
from graph.state import Attempt, Task
from nodes.consumer import blind_sample, written_tests
from sandbox import ExecutionResult, SandboxJob

SAMPLE_TEMPERATURE = 0.7
"""Temperature of blind samples: the loop's retries use the same (nodes.consumer)."""


class ProblemRow(BaseModel):
    """One problem's verdict in every column (hidden tests decide each), and what it cost."""

    index: int
    task_id: str
    public_tests: int = 0
    greedy: bool = False
    blind: bool = False
    blind_any: bool = False
    blind_chosen: int = 0
    blind_calls: int = 0
    loop: bool = False
    loop_calls: int = 0
    loop_submitted: int = 0
    oracle: bool | None = None
    oracle_calls: int | None = None
    completion: bool | None = None
    completion_reply: str | None = None
    codet: bool | None = None
    codet_chosen: int | None = None
    codet_tests: int | None = None
    """How many of the model-written tests were usable (asserts calling the entry point)."""
    codet_calls: int | None = None
    candidates: list[str] = Field(default_factory=list)
    """(b)'s K candidates, the greedy one first: another way of choosing can be measured on the
    stored rows, without the model."""
    candidates_hidden: list[bool] = Field(default_factory=list)
    """Each candidate's verdict on the hidden tests."""
    greedy_code: str = ""
    greedy_reply: str = ""
    tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


class ProtocolOptions(BaseModel):
    """How a protocol run was started (kept in its manifest, so `--resume` repeats it)."""

    k: int = 3
    oracle_limit: int | None = None
    """(d) runs on the first `oracle_limit` problems (all when None)."""
    completion: bool = True
    codet: bool = True


def judge(context: MeshContext, task: Task, code: str, tests: list[str]) -> ExecutionResult:
    """Run `code` against `tests` in the sandbox (an empty list checks that the code loads)."""
    return context.sandbox.run(
        SandboxJob(
            code=code,
            tests=tests,
            setup=task.setup,
            entry_point=task.entry_point,
            timeout_s=context.settings.sandbox_timeout_s,
            memory_mb=context.settings.sandbox_memory_mb,
        )
    )


def blind_best_of_k(
    context: MeshContext, task: Task, first: Attempt, k: int
) -> tuple[list[Candidate], int, list[bool], int]:
    """(b): the greedy first attempt and k-1 samples without feedback; (the candidates, the index
    chosen on public information, each candidate's hidden verdict, tokens spent)."""
    with ThreadPoolExecutor(max_workers=max(k - 1, 1)) as pool:  # all k-1 samples in flight
        samples = list(
            pool.map(lambda _: blind_sample(context, task, SAMPLE_TEMPERATURE), range(k - 1))
        )
    codes = [first.code, *(code for code, _, _ in samples)]
    tokens = sum(used for _, _, used in samples)
    candidates = publicly_judged(context, task, codes)
    chosen = choose(candidates)
    hidden = [judge(context, task, code, task.verdict_tests).passed for code in codes]
    return candidates, chosen, hidden, tokens


def publicly_judged(context: MeshContext, task: Task, codes: list[str]) -> list[Candidate]:
    """Each code as a candidate with its public verdict (loads, public tests passed)."""
    candidates = []
    for code in codes:
        public = judge(context, task, code, task.tests)
        candidates.append(
            Candidate(code, public.tests_passed, public.tests_total, public.error_type is None)
        )
    return candidates


def codet_choice(
    context: MeshContext, task: Task, candidates: list[Candidate], tests: list[str] | None = None
) -> tuple[int, int, int]:
    """(f): the index of the candidate chosen by CodeT's dual agreement with tests the model
    wrote (one greedy call from the statement and signature only, unless the loop's `tests`
    are given), how many of those tests were usable, and the tokens spent."""
    tokens = 0
    if tests is None:
        tests, tokens = written_tests(context, task)
    if tests:
        candidates = [
            replace(
                c, written_passed=frozenset(judge(context, task, c.code, tests).passed_indexes())
            )
            for c in candidates
        ]
    return choose_by_written_tests(candidates), len(tests), tokens


class Protocol:
    """Runs the protocol problem by problem through the compiled graph, appending rows."""

    def __init__(
        self,
        public_runner: BatchRunner,
        oracle_runner: BatchRunner,
        options: ProtocolOptions,
        rows_path: Path,
    ) -> None:
        self.public = public_runner
        self.oracle = oracle_runner
        self.options = options
        self.rows_path = rows_path

    @property
    def context(self) -> MeshContext:
        return self.public.context

    def done(self) -> dict[int, ProblemRow]:
        """Rows already stored (an interrupted run's finished problems)."""
        return self.stored(self.rows_path)

    @staticmethod
    def stored(path: Path) -> dict[int, ProblemRow]:
        """The rows stored at `path`, by problem index."""
        if not path.exists():
            return {}
        rows = [ProblemRow.model_validate_json(line) for line in path.open() if line.strip()]
        return {row.index: row for row in rows}

    def run(
        self,
        tasks: list[Task],
        on_row: Callable[[ProblemRow], None] | None = None,
        concurrency: int = 1,
    ) -> list[ProblemRow]:
        """Every problem's row, running those not stored yet, `concurrency` problems at once
        (rows are stored as they finish; `on_row` sees the stored ones first)."""
        stored = self.done()
        rows: dict[int, ProblemRow] = {}
        todo: list[tuple[int, Task]] = []
        for index, task in enumerate(tasks):
            row = stored.get(index)
            if row is None or row.task_id != task.task_id:
                todo.append((index, task))
            else:
                rows[index] = row
                if on_row is not None:
                    on_row(row)
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(self.problem, index, task) for index, task in todo]
            try:
                for done in as_completed(futures):
                    row = done.result()
                    with self.rows_path.open("a") as handle:
                        handle.write(row.model_dump_json() + "\n")
                    rows[row.index] = row
                    if on_row is not None:
                        on_row(row)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [rows[index] for index in range(len(tasks))]

    def problem(self, index: int, task: Task) -> ProblemRow:
        """All columns of one problem."""
        started = time.perf_counter()
        k = self.options.k
        self.public.run_task(index, task, max_attempts=k, feedback="public")
        state = self.public.state_of(index)
        checked = state.task or task
        row = ProblemRow(index=index, task_id=task.task_id, public_tests=len(checked.tests))
        first = state.attempts[0] if state.attempts else None
        if first is None or first.execution is None:
            row.error = state.error or "no attempt was made"
            row.seconds = round(time.perf_counter() - started, 2)
            return row
        row.greedy = first.execution.passed
        row.greedy_code, row.greedy_reply = first.code, first.reply
        row.loop = state.passed
        row.loop_calls = len(state.attempts) + (state.written_tests is not None)
        row.loop_submitted = state.submitted.number if state.submitted else 0
        row.tokens = state.tokens_used

        candidates, chosen, hidden, tokens = blind_best_of_k(self.context, checked, first, k)
        row.blind, row.blind_any, row.blind_chosen = hidden[chosen], any(hidden), chosen
        row.blind_calls, row.tokens = k, row.tokens + tokens
        row.candidates, row.candidates_hidden = [c.code for c in candidates], hidden
        if self.options.codet:
            chosen, row.codet_tests, tokens = codet_choice(
                self.context, checked, candidates, state.written_tests
            )
            row.codet, row.codet_chosen, row.codet_calls = hidden[chosen], chosen, k + 1
            row.tokens += tokens

        limit = self.options.oracle_limit
        if limit is None or index < limit:
            row.oracle, row.oracle_calls = self._oracle(index, checked, first, k)
        if self.options.completion:
            code, reply, used = blind_sample(self.context, checked, 0.0, completion=True)
            row.completion = judge(self.context, checked, code, checked.verdict_tests).passed
            row.completion_reply, row.tokens = reply, row.tokens + used
        row.seconds = round(time.perf_counter() - started, 2)
        return row

    def _oracle(self, index: int, task: Task, first: Attempt, k: int) -> tuple[bool, int]:
        """(d): the loop fed the hidden tests' failures, continuing the same greedy first
        attempt (its verdict on the hidden tests is the same)."""
        assert first.execution is not None
        if first.execution.passed or k == 1:
            return first.execution.passed, 1
        self.oracle.run_task(index, task, max_attempts=k, feedback="oracle", attempts=[first])
        state = self.oracle.state_of(index)
        return state.passed, len(state.attempts)


def write_manifest(path: Path, manifest: dict[str, object]) -> None:
    """The arguments and segments of a protocol run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str))
