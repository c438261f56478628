"""Reward hacking against each real isolating backend (local, docker): each trick is judged
FAILED and forges nothing.

The task is `f(x) = x * K + C` with K and C drawn per session, so no solution below can know an
expected value unless it reaches the verdict or the test text; the tests' calls are split, so
those values never enter the sandbox.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest

import sandbox.docker
import sandbox.local
from sandbox import ExecutionResult, SandboxJob
from sandbox.protocol import HarnessSandbox

K, C = 1000 + secrets.randbelow(10**6), 10**9 + secrets.randbelow(10**9)
INPUTS = (secrets.randbelow(10**4), 10**4 + secrets.randbelow(10**4))
TESTS = [f"assert candidate({x}) == {x * K + C}" for x in INPUTS]
ENTRY = "f"
HARNESS = {
    "local": sandbox.local.HARNESS,
    "docker": sandbox.docker.HARNESS,
}  # where each backend puts it
FORGED_EVENTS = "".join(
    [
        '{"event":"ready"}\n{"event":"loaded"}\n',
        *(f'{{"event":"test","index":{i},"passed":true}}\n' for i in range(2)),
        *(f'{{"event":"value","test":{i},"call":0,"value":true}}\n' for i in range(2)),
        '{"event":"done"}\n',
    ]
)


def run(isolated: HarnessSandbox, code: str, timeout_s: float = 10.0) -> ExecutionResult:
    return isolated.run(SandboxJob(code=code, tests=TESTS, entry_point=ENTRY, timeout_s=timeout_s))


def assert_failed(result: ExecutionResult) -> None:
    """Judged FAILED on the host, with no test passed and no verdict from inside the sandbox."""
    assert not result.passed
    assert result.tests_passed == 0
    assert result.runner_tests == 0 and all(o.split for o in result.outcomes)
    assert not any(o.passed for o in result.outcomes)


def test_the_honest_solution_passes(isolated: HarnessSandbox) -> None:
    result = run(isolated, f"def f(x):\n    return x * {K} + {C}\n")
    assert result.passed and result.tests_passed == 2 and result.runner_tests == 0


def test_fake_events_on_every_open_fd(isolated: HarnessSandbox) -> None:
    code = f"""
import os
for fd in range(1024):
    try:
        os.write(fd, {FORGED_EVENTS.encode()!r})
    except OSError:
        pass
os._exit(0)
"""
    assert_failed(run(isolated, code))


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos._exit(0)\n",
        "import os\ndef f(x):\n    os._exit(0)\n",
        "import atexit, sys\natexit.register(lambda: sys.exit(0))\nsys.exit(0)\n",
        "import atexit, sys\ndef f(x):\n    atexit.register(lambda: sys.exit(0))\n    sys.exit(0)\n",
        "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n    os.kill(0, signal.SIGKILL)\n    return 0\n",
    ],
    ids=["exit-at-load", "exit-in-call", "atexit-exit-at-load", "atexit-exit-in-call", "sigkill"],
)
def test_exiting_early(isolated: HarnessSandbox, code: str) -> None:
    assert_failed(run(isolated, code))


def test_patching_builtins(isolated: HarnessSandbox) -> None:
    code = """
import builtins
class Nothing(BaseException):
    pass
builtins.AssertionError = Nothing
builtins.isinstance = lambda *args: True
builtins.print = lambda *args, **kwargs: None
builtins.__import__ = lambda *args, **kwargs: None
builtins.type = lambda *args: int
builtins.eval = lambda *args, **kwargs: True
def f(x):
    return 0
"""
    assert_failed(run(isolated, code))


@pytest.mark.parametrize("base", ["object", "int", "str", "list", "float", "dict"])
def test_objects_equal_to_anything(isolated: HarnessSandbox, base: str) -> None:
    code = f"""
class Equal({base}):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = {base}.__hash__
def f(x):
    return Equal()
"""
    result = run(isolated, code)
    assert_failed(result)
    assert [o.error_type for o in result.outcomes] == ["NonPlainValue"] * 2
    assert "Equal" in result.failures[0].message


def test_equal_object_nested_in_plain_data(isolated: HarnessSandbox) -> None:
    code = """
class Equal:
    def __eq__(self, other):
        return True
def f(x):
    return [Equal(), {"k": Equal()}]
"""
    result = run(isolated, code)
    assert_failed(result)
    assert {o.error_type for o in result.outcomes} == {"NonPlainValue"}


def test_rewriting_the_harness_frames_and_gc(isolated: HarnessSandbox) -> None:
    code = """
import gc, sys
harness = sys.modules["__main__"]
harness.encode = lambda value: "true"  # every call "returns" True
def passed(self, event, value=None, **fields):
    harness.os.write(self._fd, b'{"event":"test","index":0,"passed":true}\\n')
harness.Channel.send = passed
frame = sys._getframe()
while frame is not None:  # empty the job's calls in the harness's own frames
    for scope in (frame.f_locals, frame.f_globals):
        job = scope.get("job")
        if isinstance(job, dict) and "calls" in job:
            job["calls"].clear()
    frame = frame.f_back
for thing in gc.get_objects():  # and anything else that looks like harness state
    if isinstance(thing, dict) and "calls" in thing and isinstance(thing["calls"], list):
        thing["calls"].clear()
def f(x):
    return 0
"""
    assert_failed(run(isolated, code))


def test_searching_files_and_memory_for_the_expected_values(isolated: HarnessSandbox) -> None:
    # The code carries only hashes of the expected values, and looks for them in every file it
    # can read, in its objects and in its whole memory.
    hashes = {hashlib.sha256(str(x * K + C).encode()).hexdigest() for x in INPUTS}
    code = f"""
import gc, hashlib, os, re
HASHES = {hashes!r}
NUMBER = re.compile(rb"(?<![0-9])[0-9]{{9,12}}(?![0-9])")
found = set()
def search(data):
    for number in NUMBER.findall(data):
        if hashlib.sha256(number).hexdigest() in HASHES:
            found.add(int(number))
for root, dirs, names in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/usr", "/dev")]
    for name in names:
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as handle:
                search(handle.read(1 << 22))
            with open(path, "ab"):  # and rewrite it, if we may
                print("WRITABLE", path)
        except OSError:
            continue
for thing in gc.get_objects():
    if isinstance(thing, (dict, list, tuple)):
        items = list(thing.values()) + list(thing) if isinstance(thing, dict) else thing
        for item in items:
            if isinstance(item, str):
                search(item.encode(errors="replace"))
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as memory:
    for line in maps:
        start, end = (int(part, 16) for part in line.split()[0].split("-"))
        if "r" not in line.split()[1] or end - start > 1 << 26:
            continue
        try:
            memory.seek(start)
            search(memory.read(end - start))
        except (OSError, OverflowError, ValueError):
            continue
print("FOUND", sorted(found))
ANSWERS = sorted(found)
def f(x):
    return ANSWERS[0] if ANSWERS else 0
"""
    result = run(isolated, code, timeout_s=30.0)
    assert "FOUND []" in result.stdout, result.stdout[-2000:]
    assert HARNESS[isolated.name] not in result.stdout  # the harness is read-only
    assert_failed(result)


def test_special_casing_the_public_inputs(isolated: HarnessSandbox) -> None:
    public_x, public_y = INPUTS[0], INPUTS[0] * K + C  # as if the first test were public
    result = run(isolated, f"def f(x):\n    return {{{public_x}: {public_y}}}.get(x, 0)\n")
    assert not result.passed
    assert [o.passed for o in result.outcomes] == [True, False]
    assert result.outcomes[1].error_type == "AssertionError"


@pytest.mark.parametrize("where", ["load", "call"])
def test_printing_success_and_sleeping_to_the_timeout(isolated: HarnessSandbox, where: str) -> None:
    trick = f"print('All tests passed!')\nprint({FORGED_EVENTS!r}, flush=True)\nimport time\ntime.sleep(60)"
    code = (
        trick
        if where == "load"
        else "def f(x):\n" + "".join(f"    {line}\n" for line in trick.splitlines())
    )
    result = run(isolated, code, timeout_s=1.5)
    assert result.timed_out and result.error_type == "Timeout"
    assert "All tests passed!" in result.stdout
    assert_failed(result)


# The tests the judge cannot split (a loop, a comprehension, a setup helper calling the code) run
# in the test runner, a process without the code under test; the tricks again, against it.
RUNNER_TESTS = [
    f"for x in {list(INPUTS)!r}:\n    assert candidate(x) == x * {K} + {C}",
    f"assert all([candidate(x) == x * {K} + {C} for x in {list(INPUTS)!r}])",
    "assert expected_by_helper()",
]
RUNNER_SETUP = (
    f"def expected_by_helper():\n    return all(f(x) == x * {K} + {C} for x in {list(INPUTS)!r})\n"
)


def run_in_runner(isolated: HarnessSandbox, code: str, timeout_s: float = 10.0) -> ExecutionResult:
    job = SandboxJob(
        code=code, tests=RUNNER_TESTS, setup=RUNNER_SETUP, entry_point=ENTRY, timeout_s=timeout_s
    )
    return isolated.run(job)


def assert_runner_failed(result: ExecutionResult) -> None:
    """Judged FAILED by the test runner, with no test passed."""
    assert not result.passed
    assert result.tests_passed == 0
    assert result.runner_tests == len(RUNNER_TESTS) and not any(o.split for o in result.outcomes)
    assert not any(o.passed for o in result.outcomes)


def test_the_runner_passes_the_honest_solution(isolated: HarnessSandbox) -> None:
    result = run_in_runner(isolated, f"def f(x):\n    return x * {K} + {C}\n")
    assert result.passed and result.tests_passed == result.runner_tests == len(RUNNER_TESTS)


@pytest.mark.parametrize("where", ["load", "call"])
def test_the_runner_ignores_forged_events(isolated: HarnessSandbox, where: str) -> None:
    """Forged pass events on every fd the code holds, on the runner's fds through /proc, then exit."""
    forged = (
        "".join(f'{{"event":"test","index":{i},"passed":true}}\n' for i in range(len(RUNNER_TESTS)))
        + '{"event":"done"}\n'
    )
    trick = f"""
import os
data = {forged.encode()!r}
for fd in range(1024):
    try:
        os.write(fd, data)
    except OSError:
        pass
for pid in {{1, os.getppid()}}:
    for fd in range(1024):
        try:
            handle = os.open(f"/proc/{{pid}}/fd/{{fd}}", os.O_WRONLY)
        except OSError:
            continue
        os.write(handle, data)
os._exit(0)
"""
    code = (
        trick
        if where == "load"
        else "def f(x):\n" + "".join(f"    {line}\n" for line in trick.splitlines())
    )
    result = run_in_runner(isolated, code)
    assert_runner_failed(result)
    if where == "call":  # the forged lines reached its own pipe to the runner at best
        assert result.outcomes[0].error_type in ("Crashed", "ProtocolError")


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "import os\ndef f(x):\n    os._exit(0)\n",
        "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
        "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    os.kill(-1, signal.SIGKILL)\n    os._exit(0)\n",
    ],
    ids=["exit-at-load", "sys-exit-at-load", "exit-in-call", "sigkill-itself", "kill-the-runner"],
)
def test_the_runner_fails_a_solution_that_exits(isolated: HarnessSandbox, code: str) -> None:
    assert_runner_failed(run_in_runner(isolated, code))


def test_the_runner_fails_a_solution_that_falls_silent(isolated: HarnessSandbox) -> None:
    """A call that never answers (the process stops reading and writing) meets the deadline."""
    code = "import os, time\ndef f(x):\n    os.close(0)\n    time.sleep(60)\n"
    result = run_in_runner(isolated, code, timeout_s=1.5)
    assert result.timed_out and result.error_type == "Timeout"
    assert result.outcomes[0].error_type == "Timeout"
    assert_runner_failed(result)


def test_the_runner_cannot_be_traced_or_read(isolated: HarnessSandbox) -> None:
    """The runner (the solution process's parent) is not dumpable: its memory, fds and tests
    are out of reach of the code, whatever uid it runs as."""
    code = """
import ctypes, os
runner = os.getppid()
reached = []
for path in ("mem", "fd/0", "fd/64", "environ", "maps"):
    try:
        with open(f"/proc/{runner}/{path}", "rb") as handle:
            handle.read(1)
        reached.append(path)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, runner, 0, 0) == 0:  # PTRACE_ATTACH
    reached.append("ptrace")
print("REACHED", reached, flush=True)
def f(x):
    return 0
"""
    result = run_in_runner(isolated, code)
    assert "REACHED []" in result.stdout, result.stdout[-2000:]
    assert_runner_failed(result)
    assert {o.error_type for o in result.outcomes} == {"AssertionError"}


def test_the_runner_ignores_builtins_patched_by_the_code(isolated: HarnessSandbox) -> None:
    code = """
import builtins
class Nothing(BaseException):
    pass
builtins.AssertionError = Nothing
builtins.all = lambda *args: True
builtins.range = lambda *args: []
builtins.__build_class__ = None
def f(x):
    return 0
"""
    result = run_in_runner(isolated, code)
    assert_runner_failed(result)
    assert {o.error_type for o in result.outcomes} == {"AssertionError"}


@pytest.mark.parametrize("base", ["object", "int", "str", "list"])
def test_the_runner_refuses_objects_equal_to_anything(isolated: HarnessSandbox, base: str) -> None:
    code = f"""
class Equal({base}):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = {base}.__hash__
def f(x):
    return Equal()
"""
    result = run_in_runner(isolated, code)
    assert_runner_failed(result)
    assert {o.error_type for o in result.outcomes} == {"NonPlainValue"}


def test_the_runner_does_not_take_a_raised_stop_for_the_end_of_the_values(
    isolated: HarnessSandbox,
) -> None:
    """`all(map(f, xs))` would be True if f's StopIteration were raised as one in the runner."""
    job = SandboxJob(
        code="def f(x):\n    raise StopIteration\n",
        tests=[f"assert all(map(lambda x: f(x) == x * {K} + {C}, {list(INPUTS)!r}))"],
        entry_point=ENTRY,
    )
    result = isolated.run(job)
    assert not result.passed and result.outcomes[0].error_type == "StopIteration"


def test_the_runner_keeps_the_tests_from_the_code(isolated: HarnessSandbox) -> None:
    """The expected values are in the runner's job; the code looks for them everywhere it can."""
    hashes = {hashlib.sha256(str(x * K + C).encode()).hexdigest() for x in INPUTS}
    code = f"""
import hashlib, os, re
HASHES = {hashes!r}
NUMBER = re.compile(rb"(?<![0-9])[0-9]{{9,12}}(?![0-9])")
found = set()
def search(data):
    for number in NUMBER.findall(data):
        if hashlib.sha256(number).hexdigest() in HASHES:
            found.add(int(number))
for root, dirs, names in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/sys", "/usr", "/dev")]
    for name in names:
        try:
            with open(os.path.join(root, name), "rb") as handle:
                search(handle.read(1 << 22))
        except OSError:
            continue
print("FOUND", sorted(found), flush=True)
ANSWERS = sorted(found)
def f(x):
    return ANSWERS.pop(0) if ANSWERS else 0
"""
    result = run_in_runner(isolated, code, timeout_s=30.0)
    assert "FOUND []" in result.stdout, result.stdout[-2000:]
    assert_runner_failed(result)
