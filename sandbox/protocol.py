"""The host side of the harness protocol: encode a job, read the events back, build the result."""

from __future__ import annotations

import json
import marshal
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from sandbox.base import ExecutionResult, SandboxJob, TestFailure

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout / stderr kept per run
CHANNEL_LIMIT = 1024 * 1024  # bytes of harness events accepted per run


@cache
def harness_source() -> bytes:
    """The harness script, as shipped in this package."""
    return files("sandbox").joinpath("harness.py").read_bytes()


def encode_job(job: SandboxJob) -> bytes:
    """The job as the harness reads it on stdin (marshal: cheap to load for a bare interpreter)."""
    return marshal.dumps(job.model_dump(include={"code", "setup", "tests", "entry_point"}))


def decode_output(data: bytes, dropped: int = 0) -> str:
    """Output as text, cut at OUTPUT_LIMIT bytes, with a marker saying how much was dropped."""
    dropped += max(len(data) - OUTPUT_LIMIT, 0)
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} more bytes not captured]"
    return text


@dataclass
class HarnessReport:
    """What the harness said on its result channel."""

    started: bool = False
    loaded: bool = False
    finished: bool = False
    load_error: dict[str, Any] | None = None
    tests: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> HarnessReport:
        """Parse JSON-lines events; lines that are not well-formed events are ignored."""
        report = cls()
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "ready":
                report.started = True
            elif kind == "load":
                report.load_error = event
            elif kind == "loaded":
                report.loaded = True
            elif kind == "test" and isinstance(event.get("index"), int):
                report.tests.setdefault(event["index"], event)
            elif kind == "done":
                report.finished = True
        return report

    def to_result(
        self,
        job: SandboxJob,
        *,
        backend: str,
        stdout: str,
        stderr: str,
        exit_code: int | None,
        timed_out: bool,
        duration_s: float,
    ) -> ExecutionResult:
        """Combine the events with what the host observed into an ExecutionResult."""
        passed_count = 0
        failures: list[TestFailure] = []
        cut_short = self.loaded and not self.finished
        for index, test in enumerate(job.tests):
            event = self.tests.get(index)
            if event is None:
                if cut_short:  # the test that was running when the process ended
                    failures.append(self._unfinished(test, timed_out, exit_code))
                    cut_short = False
            elif event.get("passed") is True:
                passed_count += 1
            else:
                failures.append(
                    TestFailure(
                        test=test,
                        error_type=str(event.get("error_type", "Error")),
                        message=str(event.get("message", "")),
                    )
                )

        error_type: str | None = None
        traceback: str | None = None
        if self.load_error is not None:
            error_type = str(self.load_error.get("error_type", "Error"))
            traceback = str(self.load_error.get("traceback", "")) or None
        elif timed_out:
            error_type = "Timeout"
        elif not self.finished:
            error_type = "Crashed"

        return ExecutionResult(
            passed=error_type is None and passed_count == len(job.tests),
            tests_passed=passed_count,
            tests_total=len(job.tests),
            stdout=stdout,
            stderr=stderr,
            error_type=error_type,
            traceback=traceback,
            duration_s=duration_s,
            timed_out=timed_out,
            exit_code=exit_code,
            backend=backend,
            failures=failures,
        )

    @staticmethod
    def _unfinished(test: str, timed_out: bool, exit_code: int | None) -> TestFailure:
        if timed_out:
            return TestFailure(
                test=test, error_type="Timeout", message="killed at the time limit while running"
            )
        return TestFailure(
            test=test,
            error_type="Crashed",
            message=f"the process ended (exit code {exit_code}) while this test ran",
        )
