"""The sandbox interface: run candidate code against tests and get a structured result."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from pydantic import BaseModel, Field


class SandboxError(RuntimeError):
    """The sandbox itself could not run (missing backend, no isolation, unreachable service)."""


def first_line(message: object, limit: int = 200) -> str:
    """The first non-empty line of a message, capped: SandboxErrors are one readable line."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


class SandboxJob(BaseModel):
    """What to run: a solution, optional setup code, and independent test snippets."""

    code: str
    tests: list[str] = Field(default_factory=list)
    setup: str = ""
    entry_point: str | None = None
    timeout_s: float = 10.0
    memory_mb: int = 512


class TestFailure(BaseModel):
    """One failing test snippet and why it failed."""

    __test__ = False  # not a pytest class

    test: str
    error_type: str
    message: str = ""


class TestOutcome(BaseModel):
    """The verdict on one test of the job, by its index in `SandboxJob.tests`.

    `split`: the host decided it from the plain values the code's calls returned; False: the test
    runner decided it, a sandboxed process that runs the test but not the code (each call goes
    to the solution process as plain data). The code can forge neither.
    `error_type` is None when it passed, "NotRun" when there is no verdict (the code did not
    load, or the run ended before the test's turn).
    """

    __test__ = False  # not a pytest class

    index: int
    test: str
    passed: bool
    error_type: str | None = None
    message: str = ""
    split: bool = True


class ExecutionResult(BaseModel):
    """The structured outcome of one sandboxed job.

    Every test counts in `tests_passed` / `tests_total` and `passed`; `runner_tests` says how
    many verdicts came from the test runner rather than the host's judge (see `TestOutcome.split`).
    """

    passed: bool
    tests_passed: int = 0
    tests_total: int = 0
    stdout: str = ""
    stderr: str = ""
    error_type: str | None = None
    traceback: str | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    exit_code: int | None = None
    backend: str = ""
    failures: list[TestFailure] = Field(default_factory=list)
    outcomes: list[TestOutcome] = Field(default_factory=list)
    runner_tests: int = 0

    def passed_indexes(self) -> list[int]:
        """The indexes of the tests that passed."""
        return [o.index for o in self.outcomes if o.passed]

    def feedback(self, limit: int = 1500) -> str:
        """A compact error summary to show the model on a retry."""
        parts: list[str] = []
        if self.timed_out:
            parts.append(
                "The run was killed: it exceeded the time limit (infinite loop or too slow)."
            )
        if self.error_type and not self.failures:
            parts.append(f"{self.error_type}: {self.traceback or self.stderr}".strip())
        for failure in self.failures[:5]:
            parts.append(f"FAILED {failure.test!r}: {failure.error_type} {failure.message}".strip())
        if self.tests_total:
            parts.append(f"{self.tests_passed}/{self.tests_total} tests passed.")
        return "\n".join(parts)[:limit]


class Sandbox(ABC):
    """A backend that runs a SandboxJob in isolation.

    `timeout_s` and `memory_mb` are ceilings: a job gets the smaller of its own limit and the
    backend's. `allow_unisolated` is the explicit opt-in to run code without isolation when
    isolation is impossible; only backends that can fall back to that honour it.
    """

    name: str = "abstract"

    def __init__(
        self, *, timeout_s: float = 10.0, memory_mb: int = 512, allow_unisolated: bool = False
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.allow_unisolated = allow_unisolated

    def limits(self, job: SandboxJob) -> tuple[float, int]:
        """The wall timeout (s) and memory cap (MiB) that apply to this job."""
        return min(job.timeout_s, self.timeout_s), min(job.memory_mb, self.memory_mb)

    @abstractmethod
    def run(self, job: SandboxJob) -> ExecutionResult:
        """Run the job and return its result; raise SandboxError if the backend cannot run."""

    async def arun(self, job: SandboxJob) -> ExecutionResult:
        """Async variant; backends with native async I/O may override it."""
        return await asyncio.to_thread(self.run, job)
