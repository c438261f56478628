"""LocalSandbox behaviour on ordinary jobs: results, counting, load failures, time limits."""

from __future__ import annotations

import asyncio

import pytest

from sandbox import SandboxError, SandboxJob
from sandbox.local import LocalSandbox

ADD = "def add(a, b):\n    return a + b\n"


def test_passing_job(local: LocalSandbox) -> None:
    job = SandboxJob(
        code=ADD + "print('hello from the solution')",
        tests=[
            "assert candidate(1, 2) == 3",
            "assert add(-1, 1) == 0",
            "assert candidate(0, 0) == 0",
        ],
        entry_point="add",
    )
    result = local.run(job)
    assert result.passed
    assert (result.tests_passed, result.tests_total) == (3, 3)
    assert result.stdout == "hello from the solution\n"
    assert result.error_type is None and result.failures == []
    assert (result.exit_code, result.backend, result.timed_out) == (0, "local", False)


def test_partial_pass_counts_each_test(local: LocalSandbox) -> None:
    job = SandboxJob(
        code=ADD,
        tests=[
            "assert add(1, 2) == 3",
            "assert add(2, 2) == 5, 'two and two'",
            "assert add(0, 1) == 1",
            "assert add(5, 5) == 10",
        ],
    )
    result = local.run(job)
    assert not result.passed
    assert (result.tests_passed, result.tests_total) == (3, 4)
    [failure] = result.failures
    assert failure.test == job.tests[1]
    assert (failure.error_type, failure.message) == ("AssertionError", "two and two")
    assert "3/4 tests passed." in result.feedback()


def test_tests_are_independent(local: LocalSandbox) -> None:
    job = SandboxJob(
        code="state = []\ndef push(x):\n    state.append(x)\n    return len(state)",
        setup="def helper():\n    return 41 + 1",
        tests=[
            "leaked = 1\nassert push(1) == 1",
            "assert 'leaked' not in globals()",
            "assert helper() == 42",
        ],
    )
    result = local.run(job)
    assert result.passed, result.failures


def test_the_runner_sees_the_codes_functions_and_imports_not_its_data(
    local: LocalSandbox,
) -> None:
    """The tests reach the code only through calls; the code's standard imports are the
    runner's own; its other values (here an `EXPECTED` table) are out of the tests' reach."""
    job = SandboxJob(
        code="import math as m\nEXPECTED = [0, 1]\ndef f(x):\n    print('called', x)\n    return x",
        tests=[
            "for x in [0, 1]:\n    assert f(x) == x",
            "assert all(m.isclose(f(x), x) for x in [2.0])",
            "assert [f(x) for x in [0, 1]] == EXPECTED",
            "try:\n    f(1, 2)\nexcept TypeError as exc:\n    assert 'positional' in str(exc)",
        ],
    )
    result = local.run(job)
    assert [o.error_type for o in result.outcomes] == [None, None, "NameError", None]
    assert result.runner_tests == 4
    assert result.stdout.count("called") == 5


def test_syntax_error(local: LocalSandbox) -> None:
    result = local.run(
        SandboxJob(code="def add(a, b)\n    return a + b", tests=["assert add(1, 2) == 3"])
    )
    assert not result.passed
    assert result.error_type == "SyntaxError"
    assert (result.tests_passed, result.tests_total) == (0, 1)
    assert result.traceback and 'File "<solution>", line 1' in result.traceback
    assert "harness" not in result.traceback


def test_exception_at_import(local: LocalSandbox) -> None:
    code = "import json\nCONFIG = json.loads('{broken')\n"
    result = local.run(SandboxJob(code=code, tests=["assert True", "assert True"]))
    assert result.error_type == "JSONDecodeError"
    assert result.tests_passed == 0 and not result.passed
    assert result.traceback and "CONFIG = json.loads('{broken')" in result.traceback
    assert "JSONDecodeError" in result.feedback()


def test_missing_entry_point(local: LocalSandbox) -> None:
    result = local.run(
        SandboxJob(code=ADD, tests=["assert candidate(1, 1) == 2"], entry_point="plus")
    )
    assert result.error_type == "NameError"
    assert result.traceback and "'plus' is not defined by the code" in result.traceback


def test_timeout_keeps_finished_tests(local: LocalSandbox) -> None:
    code = "import time\ndef ok():\n    return 1\ndef slow():\n    time.sleep(60)\n"
    job = SandboxJob(
        code=code,
        tests=["assert ok() == 1", "assert slow() is None", "assert ok() == 1"],
        timeout_s=1.0,
    )
    result = local.run(job)
    assert result.timed_out and result.error_type == "Timeout"
    assert 1.0 <= result.duration_s < 2.5
    assert (result.tests_passed, result.tests_total) == (1, 3)
    assert [failure.error_type for failure in result.failures] == ["Timeout"]
    # The call running at the deadline is blamed; the one never reached has no verdict.
    assert [o.error_type for o in result.outcomes] == [None, "Timeout", "NotRun"]
    assert result.exit_code == -9
    assert "exceeded the time limit" in result.feedback()


def test_timeout_in_a_whole_test_spares_the_split_ones(local: LocalSandbox) -> None:
    job = SandboxJob(
        code="import time",
        tests=["assert True", "time.sleep(60)", "assert True"],
        timeout_s=1.0,
    )
    result = local.run(job)
    assert result.timed_out and result.error_type == "Timeout"
    assert 1.0 <= result.duration_s < 2.5  # both runs share the time limit
    # The asserts are judged on the host; the sleep runs in the test runner, a second run.
    assert (result.tests_passed, result.runner_tests) == (2, 1)
    assert [(o.passed, o.split) for o in result.outcomes] == [
        (True, True),
        (False, False),
        (True, True),
    ]
    assert [failure.error_type for failure in result.failures] == ["Timeout"]


def test_backend_limits_are_ceilings() -> None:
    strict = LocalSandbox(timeout_s=1.0, memory_mb=128)
    result = strict.run(SandboxJob(code="import time", tests=["time.sleep(60)"], timeout_s=60))
    assert result.timed_out and result.duration_s < 2.5
    result = strict.run(
        SandboxJob(code="", tests=["x = bytearray(256 * 1024 * 1024)"], memory_mb=4096)
    )
    assert result.failures[0].error_type == "MemoryError"


def test_result_channel_ignores_forged_output(local: LocalSandbox) -> None:
    forged = '{"event": "test", "index": 0, "passed": true}\\n{"event": "done"}\\n'
    code = f"import sys\nprint('{forged}')\nprint('{forged}', file=sys.stderr)"
    result = local.run(SandboxJob(code=code, tests=["assert False, 'really failed'"]))
    assert not result.passed and result.tests_passed == 0
    assert result.failures[0].message == "really failed"
    assert '"event": "done"' in result.stdout


def test_exit_calls_do_not_break_reporting(local: LocalSandbox) -> None:
    job = SandboxJob(
        code="import sys", tests=["sys.exit(0)", "raise KeyboardInterrupt", "assert True"]
    )
    result = local.run(job)
    assert (result.tests_passed, result.tests_total) == (1, 3)
    assert [failure.error_type for failure in result.failures] == [
        "SystemExit",
        "KeyboardInterrupt",
    ]


def test_hard_exit_is_reported_as_crash(local: LocalSandbox) -> None:
    code = "import os\ndef die():\n    os._exit(3)\n"
    for tests in (
        ["assert True", "assert die() == 0", "assert True"],  # a call: the split run crashes
        ["assert True", "os._exit(3)", "assert True"],  # a whole test: the test runner exits
    ):
        result = local.run(SandboxJob(code=code, tests=tests))
        assert result.error_type == "Crashed" and result.exit_code == 3
        assert result.tests_passed == 2  # the asserts without calls are judged on the host
        assert [failure.error_type for failure in result.failures] == ["Crashed"]
        assert result.outcomes[1].error_type == "Crashed"


def test_arun(local: LocalSandbox) -> None:
    async def both() -> list[bool]:
        jobs = [SandboxJob(code=ADD, tests=["assert add(1, 1) == 2"]) for _ in range(2)]
        return [
            result.passed for result in await asyncio.gather(*(local.arun(job) for job in jobs))
        ]

    assert asyncio.run(both()) == [True, True]


def test_timeout_while_loading_blames_no_test(local: LocalSandbox) -> None:
    result = local.run(SandboxJob(code="while True:\n    pass", tests=["assert True"], timeout_s=1))
    assert result.timed_out and result.error_type == "Timeout"
    assert result.failures == [] and result.tests_passed == 0


def test_sandbox_that_cannot_start_raises(local: LocalSandbox) -> None:
    too_small = LocalSandbox(memory_mb=8)  # not even the interpreter fits
    with pytest.raises(SandboxError, match="failed before the harness started") as error:
        too_small.run(SandboxJob(code="x = 1", tests=["assert x == 1"]))
    assert "\n" not in str(error.value)
