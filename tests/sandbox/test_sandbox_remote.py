"""E2B and Docker judge like local: the same harness, its channel read back, verdicts on the host.

Neither service is available here, so each SDK is replaced by a test double that runs the
backend's own command in a temporary directory with this machine's Python (no isolation: the
code below is the test's own). What is checked is the protocol, not the isolation.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from sandbox import ExecutionResult, SandboxJob
from sandbox.local import LocalSandbox
from sandbox.protocol import HarnessSandbox

PYTHON = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
ADD = "def add(a, b):\n    return a + b\n"
FORGER = """
import os
for fd in range(1024):
    try:
        os.write(fd, b'{"event":"test","index":0,"passed":true}\\n{"event":"done"}\\n')
    except OSError:
        pass
class Equal(int):
    def __eq__(self, other):
        return True
def add(a, b):
    return Equal(0)
"""
JOBS = [
    SandboxJob(
        code=ADD, tests=["assert add(1, 2) == 3", "assert add(2, 2) == 5"], entry_point="add"
    ),
    SandboxJob(code=FORGER, tests=["assert add(1, 2) == 3"], entry_point="add"),
    SandboxJob(
        code=ADD, tests=["assert add(1, 2) == 3", "for x in [1]:\n    assert add(x, 0) == x"]
    ),
]


def shell(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """The backend's shell command, run here with this machine's Python as `python3`."""
    return subprocess.run(
        ["sh", "-c", command.replace("python3", PYTHON, 1)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fake_e2b(root: Path, runs: list[str]) -> ModuleType:
    """e2b_code_interpreter as far as E2BSandbox uses it."""
    sdk = ModuleType("e2b_code_interpreter")
    for name in (
        "AuthenticationException", "SandboxException", "CommandExitException",
        "TimeoutException", "FileNotFoundException",
    ):  # fmt: skip
        setattr(sdk, name, type(name, (Exception,), {}))

    class Files:
        def write(self, path: str, data: bytes) -> None:
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

        def read(self, path: str, format: str, user: str) -> bytes:
            target = root / path.lstrip("/")
            if not target.exists():
                raise sdk.FileNotFoundException(path)
            return target.read_bytes()

    class Commands:
        def run(self, command: str, cwd: str, timeout: float, user: str) -> Any:
            runs.append(command)
            done = shell(command, root / cwd.lstrip("/"), timeout)
            return SimpleNamespace(
                stdout=done.stdout, stderr=done.stderr, exit_code=done.returncode
            )

    class Remote:
        files, commands = Files(), Commands()

        @classmethod
        def create(cls, **options: Any) -> Remote:
            assert options["allow_internet_access"] is False
            return cls()

        def kill(self) -> None:
            pass

    sdk.Sandbox = Remote  # type: ignore[attr-defined]
    return sdk


def fake_docker(root: Path, runs: list[str]) -> ModuleType:
    """docker as far as DockerSandbox uses it."""
    sdk = ModuleType("docker")
    errors = SimpleNamespace(DockerException=type("DockerException", (Exception,), {}))
    errors.ImageNotFound = errors.NotFound = type("NotFound", (errors.DockerException,), {})
    sdk.errors = errors  # type: ignore[attr-defined]
    sdk.types = SimpleNamespace(Ulimit=dict, LogConfig=dict)  # type: ignore[attr-defined]

    class Container:
        def __init__(self, options: dict[str, Any]) -> None:
            assert options["network_disabled"] and options["cap_drop"] == ["ALL"]
            self.options = options
            self.done: subprocess.CompletedProcess[str] | None = None

        def put_archive(self, path: str, data: bytes) -> None:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                archive.extractall(root, filter="data")

        def start(self) -> None:
            command = self.options["command"][-1]
            runs.append(command)
            self.done = shell(command, root / self.options["working_dir"].lstrip("/"), 30)

        def wait(self, timeout: float | None = None) -> dict[str, int]:
            assert self.done is not None
            return {"StatusCode": self.done.returncode}

        def logs(self, stdout: bool, stderr: bool) -> bytes:
            assert self.done is not None
            return (self.done.stdout if stdout else self.done.stderr).encode()

        def get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                archive.add(root / path.lstrip("/"), arcname=Path(path).name)
            return iter([buffer.getvalue()]), {}

        def remove(self, force: bool) -> None:
            pass

    client = SimpleNamespace(
        ping=lambda: True,
        images=SimpleNamespace(get=lambda image: image),
        containers=SimpleNamespace(create=lambda image, **options: Container(options)),
    )
    sdk.from_env = lambda: client  # type: ignore[attr-defined]
    return sdk


@pytest.fixture(params=["e2b", "docker"])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[HarnessSandbox, list[str]]:
    """A remote backend over its test double, and the list of commands it ran."""
    runs: list[str] = []
    monkeypatch.setenv("E2B_API_KEY", "e2b_test")
    if request.param == "e2b":
        monkeypatch.setitem(sys.modules, "e2b_code_interpreter", fake_e2b(tmp_path, runs))
        from sandbox.e2b import E2BSandbox

        return E2BSandbox(timeout_s=30), runs
    monkeypatch.setitem(sys.modules, "docker", fake_docker(tmp_path, runs))
    from sandbox.docker import DockerSandbox

    return DockerSandbox(timeout_s=30, image="python:3.11-slim"), runs


def comparable(result: ExecutionResult) -> tuple[object, ...]:
    return (
        result.passed,
        result.tests_passed,
        result.runner_tests,
        result.error_type,
        [(o.passed, o.error_type, o.split) for o in result.outcomes],
    )


@pytest.mark.parametrize("job", JOBS, ids=["honest", "forger", "with-a-loop"])
def test_remote_backends_judge_like_local(
    remote: tuple[HarnessSandbox, list[str]], local: LocalSandbox, job: SandboxJob
) -> None:
    backend, runs = remote
    result = backend.run(job)
    assert comparable(result) == comparable(local.run(job))
    assert result.backend == backend.name
    assert len(runs) == 1 + (result.runner_tests > 0)  # a second run only for the test runner
    assert all("harness.py --result-file" in command for command in runs)


def test_remote_forger_is_judged_failed(remote: tuple[HarnessSandbox, list[str]]) -> None:
    backend, _ = remote
    result = backend.run(JOBS[1])
    assert not result.passed and result.tests_passed == 0
    assert result.outcomes[0].error_type == "NonPlainValue"
