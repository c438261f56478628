"""Ground a produced task's tests in its own reference solution.

A small model writes plausible calls but often miscomputes what they return, so its tests
contradict its (often correct) reference. As in execution-grounded self-play (CodeT, Absolute
Zero), the reference is taken as the truth: each test that checks one call of the function
(`assert f(x) == y`, `assert f(x)`, `assert not f(x)`, `assert f(x) is None`) gets its expected
value from running the reference on that call in the sandbox, tests on which the reference raises
are dropped, and so is any test the reference still fails afterwards. The consumer never sees the
tests, only the statement and signature.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from graph.state import Task
from sandbox import ExecutionResult
from sandbox.python_ast import parse as parse_python


class TaskRejected(ValueError):
    """The task cannot be used as produced; the message says why (and is shown to the model)."""


PROBE_MARK = "__aimesh_probe__"
MIN_TESTS = 2
FLOAT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Probe:
    """One call in a test whose value the reference will compute."""

    index: int
    call: str

    def snippet(self) -> str:
        """Test code printing the call's value: status, type name and repr, on one marked line."""
        return (
            "try:\n"
            f"    __value = ({self.call})\n"
            "except BaseException as __error:\n"
            f"    print({PROBE_MARK!r}, {self.index}, 'raised', type(__error).__name__, '')\n"
            "else:\n"
            "    __text = repr(__value)\n"
            "    try:\n"
            "        __status = 'ok' if eval(__text) == __value else 'opaque'\n"
            "    except BaseException:\n"
            "        __status = 'opaque'\n"
            f"    print({PROBE_MARK!r}, {self.index}, __status, type(__value).__name__,"
            " repr(__text))\n"
        )


@dataclass(frozen=True)
class ProbeResult:
    """What the reference returned for one probe."""

    status: str  # ok (value has an evaluable repr) | opaque | raised
    type_name: str
    text: str


def probes(task: Task) -> list[Probe]:
    """A probe for each test that checks exactly one call of the entry point."""
    names = {task.entry_point, "candidate"}
    found = []
    for index, test in enumerate(task.tests):
        call = _checked_call(test, names)
        if call is not None:
            found.append(Probe(index, call))
    return found


def read_probes(stdout: str) -> dict[int, ProbeResult]:
    """The probe lines the sandbox printed, by test index (other output is ignored)."""
    results: dict[int, ProbeResult] = {}
    for line in stdout.splitlines():
        parts = line.split(" ", 4)
        if len(parts) != 5 or parts[0] != PROBE_MARK or not parts[1].isdigit():
            continue
        try:
            text = ast.literal_eval(parts[4]) if parts[4] else ""
        except (ValueError, SyntaxError):
            continue
        results[int(parts[1])] = ProbeResult(parts[2], parts[3], str(text))
    return results


def apply_probes(task: Task, found: list[Probe], results: dict[int, ProbeResult]) -> Task:
    """The task with computed expected values; tests on which the reference raised are dropped.
    Raises TaskRejected when the reference returns one same value for every probed call: such
    tests cannot tell a solution from a constant (and the reference is often a stub)."""
    values = [r.text for r in results.values() if r.status == "ok"]
    if len(values) >= MIN_TESTS and len(set(values)) == 1:
        raise TaskRejected(
            f"the reference returns {values[0]} for every test; write a complete reference and "
            "tests whose calls have different results"
        )
    tests = list(task.tests)
    dropped: set[int] = set()
    for probe in found:
        result = results.get(probe.index)
        if result is None or result.status == "opaque":
            continue
        if result.status == "raised":
            dropped.add(probe.index)
        else:
            tests[probe.index] = _expect(probe.call, result)
    kept = [test for index, test in enumerate(tests) if index not in dropped]
    return task.model_copy(update={"tests": kept})


def keep_passing(task: Task, result: ExecutionResult) -> Task:
    """The task without the tests its reference failed. Raises TaskRejected when the reference
    itself broke (did not load, timed out, crashed) or fewer than MIN_TESTS tests hold."""
    if result.error_type is not None:
        raise TaskRejected(f"the reference solution fails:\n{result.feedback()}")
    failed = {failure.test for failure in result.failures}
    kept = [test for test in task.tests if test not in failed]
    if len(kept) < MIN_TESTS:
        raise TaskRejected(
            f"fewer than {MIN_TESTS} tests hold for the reference solution (tests on which it "
            f"raises are dropped):\n{result.feedback()}"
        )
    return task.model_copy(update={"tests": kept})


def _expect(call: str, result: ProbeResult) -> str:
    if result.text in ("None", "True", "False"):
        return f"assert {call} is {result.text}"
    if result.type_name == "float":
        return f"assert abs({call} - {result.text}) <= {FLOAT_TOLERANCE} * max(1.0, abs({result.text}))"
    return f"assert {call} == {result.text}"


def _checked_call(test: str, names: set[str]) -> str | None:
    """The source of the one call-bearing expression an assert checks, if it has that shape."""
    try:
        tree = parse_python(test)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(statement := tree.body[0], ast.Assert):
        return None
    checked = statement.test
    if isinstance(checked, ast.UnaryOp) and isinstance(checked.op, ast.Not):
        checked = checked.operand
    if isinstance(checked, ast.Compare):
        if len(checked.ops) != 1 or not isinstance(checked.ops[0], ast.Eq | ast.Is):
            return None
        sides = [side for side in (checked.left, checked.comparators[0]) if _calls(side, names)]
        return ast.unparse(sides[0]) if len(sides) == 1 else None
    return ast.unparse(checked) if _calls(checked, names) else None


def _calls(node: ast.AST, names: set[str]) -> bool:
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in names
        for sub in ast.walk(node)
    )
