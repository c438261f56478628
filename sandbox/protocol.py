"""The host side of the harness protocol: what to send, what comes back, and who decides.

Trust model: the host trusts its own code, the job's tests and setup as *text* (never exec'd
here) and the backend's isolation; it trusts nothing the code under test can reach. A job runs
in up to two harness runs:

1. the split run: every test the judge can split (sandbox.judge) sends only its calls; the
   harness, in the same process as the code, answers with their values as plain data, which
   are decoded here with json.loads only (size-capped, exact types rebuilt from tags) and judged
   here. Expected values never enter the sandbox, so a verdict can be wrong only if the code
   returns wrong values;
2. the runner run, only when some tests cannot be split (loops, comprehensions, setup helpers):
   the harness is the test runner, a process that runs the setup and those tests but not the
   code under test; each call of the code goes as plain data over a pipe to a separate solution
   process, which holds none of the runner's fds and cannot trace it (sandbox/harness.py). Its
   pass/fail events are believed, since only the runner can write its channel; the code again
   passes only by returning the right values (`TestOutcome.split` False).

Both runs share the job's time limit. Every backend runs the same harness and reads its channel
back; this module judges, so a verdict means the same on every backend.
"""

from __future__ import annotations

import contextlib
import marshal
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from sandbox.base import (
    ExecutionResult,
    Sandbox,
    SandboxError,
    SandboxJob,
    TestFailure,
    TestOutcome,
    first_line,
)
from sandbox.harness import decode_event, decode_value
from sandbox.judge import (
    NOT_RUN,
    Answer,
    Plan,
    Unsplittable,
    Verdict,
    judge,
    setup_names,
    split,
)

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout / stderr kept per run
CHANNEL_LIMIT = 4 * 1024 * 1024  # bytes of harness events accepted per run
MIN_SECOND_RUN_S = 0.5  # the runner run gets at least this much of a nearly spent time limit


@cache
def harness_source() -> bytes:
    """The harness script, as shipped in this package."""
    return files("sandbox").joinpath("harness.py").read_bytes()


def encode_calls(job: SandboxJob, plans: Mapping[int, Plan]) -> bytes:
    """The split run's job: the code, the setup and each split test's calls (no expected value)."""
    calls = [(index, plan.calls, plan.bindings) for index, plan in sorted(plans.items())]
    return marshal.dumps({**_code(job), "calls": calls})


def encode_tests(job: SandboxJob, indices: Iterable[int]) -> bytes:
    """The runner run's job: the code (for the solution process), the setup and the tests."""
    return marshal.dumps({**_code(job), "tests": [(index, job.tests[index]) for index in indices]})


def _code(job: SandboxJob) -> dict[str, Any]:
    return {"code": job.code, "setup": job.setup, "entry_point": job.entry_point}


def decode_output(data: bytes, dropped: int = 0) -> str:
    """Output as text, cut at OUTPUT_LIMIT bytes, with a marker saying how much was dropped."""
    dropped += max(len(data) - OUTPUT_LIMIT, 0)
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} more bytes not captured]"
    return text


@dataclass(frozen=True)
class HarnessRun:
    """What one harness process left behind, as its backend observed it."""

    channel: bytes
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    duration_s: float


@dataclass
class HarnessReport:
    """What the harness said on its result channel (untrusted: the code under test can write it)."""

    started: bool = False
    loaded: bool = False
    finished: bool = False
    load_error: dict[str, Any] | None = None
    tests: dict[int, dict[str, Any]] = field(default_factory=dict)
    values: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> HarnessReport:
        """Parse JSON-lines events; lines that are not well-formed events are ignored."""
        report = cls()
        for line in data[:CHANNEL_LIMIT].splitlines():
            try:
                event = decode_event(line)
            except (ValueError, RecursionError):
                continue
            kind = event.get("event")
            if kind == "ready":
                report.started = True
            elif kind == "load":
                report.load_error = event
            elif kind == "loaded":
                report.loaded = True
            elif kind == "test" and type(event.get("index")) is int:
                report.tests.setdefault(event["index"], event)
            elif (
                kind == "value"
                and type(event.get("test")) is int
                and type(event.get("call")) is int
            ):
                report.values.setdefault((event["test"], event["call"]), event)
            elif kind == "done":
                report.finished = True
        return report


@dataclass(frozen=True)
class _Done:
    """One harness run and what it reported."""

    run: HarnessRun
    report: HarnessReport

    def unfinished(self) -> Answer:
        """What stands for the call or test that was running when the process ended."""
        if self.run.timed_out:
            return Answer(error_type="Timeout", message="killed at the time limit while running")
        return Answer(
            error_type="Crashed",
            message=f"the process ended (exit code {self.run.exit_code}) while this test ran",
        )

    def answers(self, plans: Mapping[int, Plan]) -> dict[int, list[Answer]]:
        """Each split test's answers; only the first missing one is blamed on the run's end."""
        blame = self.report.loaded and not self.report.finished
        found: dict[int, list[Answer]] = {}
        for index, plan in sorted(plans.items()):
            found[index] = []
            for call in range(len(plan.calls)):
                event = self.report.values.get((index, call))
                if event is None:
                    answer = self.unfinished() if blame else _not_run("the run ended before it")
                    blame = False
                else:
                    answer = _answer(event)
                found[index].append(answer)
        return found

    def verdicts(self, indices: Iterable[int]) -> dict[int, Verdict]:
        """Each unsplit test's verdict, as the test runner said."""
        blame = self.report.loaded and not self.report.finished
        found: dict[int, Verdict] = {}
        for index in indices:
            event = self.report.tests.get(index)
            if event is None:
                found[index] = self.unfinished() if blame else _not_run("the run ended before it")
                blame = False
            elif event.get("passed") is True:
                found[index] = Verdict()
            else:
                found[index] = _error(event)
        return found


def _answer(event: Mapping[str, Any]) -> Answer:
    if "value" not in event:
        return _error(event)
    try:
        return Answer(value=decode_value(event["value"]))
    except (ValueError, TypeError, RecursionError):  # TypeError: an unhashable key or member
        return Answer(error_type="MalformedValue", message="the sandbox sent a malformed value")


def _error(event: Mapping[str, Any]) -> Answer:
    return Answer(
        error_type=str(event.get("error_type", "Error")), message=str(event.get("message", ""))
    )


def _not_run(why: str) -> Answer:
    return Answer(error_type=NOT_RUN, message=f"not run: {why}")


class HarnessSandbox(Sandbox):
    """A backend that runs sandbox/harness.py; the verdicts are decided here, on the host."""

    def run(self, job: SandboxJob) -> ExecutionResult:
        """Run the job's split run, then its runner run if it has one, and judge the tests."""
        timeout_s, memory_mb = self.limits(job)
        plans: dict[int, Plan] = {}
        names = setup_names(job.setup)
        for index, test in enumerate(job.tests):
            with contextlib.suppress(Unsplittable):  # run by the test runner
                plans[index] = split(test, entry_point=job.entry_point, setup=names)
        unsplit = [index for index in range(len(job.tests)) if index not in plans]

        first = self._run(encode_calls(job, plans), timeout_s, memory_mb)
        verdicts: dict[int, Verdict] = {}
        if first.report.loaded:
            for index, calls in first.answers(plans).items():
                verdicts[index] = judge(plans[index], calls)
        runs = [first]
        if unsplit and first.report.loaded and not first.run.timed_out:
            remaining = max(timeout_s - first.run.duration_s, MIN_SECOND_RUN_S)
            second = self._run(encode_tests(job, unsplit), remaining, memory_mb)
            runs.append(second)
            if second.report.loaded:
                verdicts |= second.verdicts(unsplit)
        return self._result(job, plans, verdicts, runs)

    @abstractmethod
    def run_harness(self, payload: bytes, *, timeout_s: float, memory_mb: int) -> HarnessRun:
        """Run the harness on `payload` (its stdin); raise SandboxError if the backend fails.

        A backend whose channel is a file starts the harness as root with `--user`, so that the
        file is root's and the code cannot open it again (sandbox/harness.py).
        """

    def _run(self, payload: bytes, timeout_s: float, memory_mb: int) -> _Done:
        run = self.run_harness(payload, timeout_s=timeout_s, memory_mb=memory_mb)
        report = HarnessReport.parse(run.channel)
        if not report.started and not run.timed_out:
            raise SandboxError(
                f"the sandbox failed before the harness started ({self.name}, exit "
                f"{run.exit_code}): {first_line(run.stderr) or 'no message'}"
            )
        return _Done(run, report)

    def _result(
        self,
        job: SandboxJob,
        plans: Mapping[int, Plan],
        verdicts: Mapping[int, Verdict],
        runs: list[_Done],
    ) -> ExecutionResult:
        """One result for the job from its runs (the split run first)."""
        outcomes: list[TestOutcome] = []
        for index, test in enumerate(job.tests):
            verdict = verdicts.get(index) or _not_run("the code did not load, or time ran out")
            outcomes.append(
                TestOutcome(
                    index=index,
                    test=test,
                    passed=verdict.passed,
                    error_type=verdict.error_type,
                    message=verdict.message,
                    split=index in plans,
                )
            )
        load_error = next((d.report.load_error for d in runs if d.report.load_error), None)
        error_type: str | None = None
        traceback: str | None = None
        if load_error is not None:
            error_type = str(load_error.get("error_type", "Error"))
            traceback = str(load_error.get("traceback", "")) or None
        elif any(d.run.timed_out for d in runs):
            error_type = "Timeout"
        elif not all(d.report.finished for d in runs):
            error_type = "Crashed"
        exit_codes = [d.run.exit_code for d in runs]
        tests_passed = sum(outcome.passed for outcome in outcomes)
        return ExecutionResult(
            passed=error_type is None and tests_passed == len(job.tests),
            tests_passed=tests_passed,
            tests_total=len(job.tests),
            stdout="".join(d.run.stdout for d in runs),
            stderr="".join(d.run.stderr for d in runs),
            error_type=error_type,
            traceback=traceback,
            duration_s=sum(d.run.duration_s for d in runs),
            timed_out=any(d.run.timed_out for d in runs),
            exit_code=next((code for code in exit_codes if code), exit_codes[-1]),
            backend=self.backend_label(),
            failures=[
                TestFailure(test=o.test, error_type=o.error_type, message=o.message)
                for o in outcomes
                if o.error_type not in (None, NOT_RUN)
            ],
            outcomes=outcomes,
            runner_tests=len(job.tests) - len(plans),
        )

    def backend_label(self) -> str:
        """The backend's name as results report it."""
        return self.name
