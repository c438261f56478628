"""The backend registry, and the remote backends' one-line errors when they cannot run here.

The E2B and Docker checks drive the real SDKs (when their extras are installed) against what
this machine really lacks: an API key, a reachable service, a Docker engine.
"""

from __future__ import annotations

import importlib.util
import socket
import time

import pytest

from sandbox import PROVIDERS, SandboxError, SandboxJob, make_sandbox
from sandbox.local import LocalSandbox


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line(error: pytest.ExceptionInfo[SandboxError], expected: str) -> None:
    message = str(error.value)
    assert expected in message, message
    assert "\n" not in message and len(message) < 400


def test_registry_names_every_backend() -> None:
    assert set(PROVIDERS) == {"local", "e2b", "docker"}


def test_make_local_sandbox() -> None:
    sandbox = make_sandbox("local", timeout_s=3, memory_mb=128)
    assert isinstance(sandbox, LocalSandbox)
    assert (sandbox.timeout_s, sandbox.memory_mb, sandbox.allow_unisolated) == (3, 128, False)
    assert sandbox.run(SandboxJob(code="def x():\n    return 1", tests=["assert x() == 1"])).passed


def test_unknown_backend() -> None:
    with pytest.raises(SandboxError) as error:
        make_sandbox("firecracker")
    assert_one_line(error, "unknown sandbox 'firecracker': choose one of local, e2b, docker")


def test_e2b_without_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    started = time.monotonic()
    with pytest.raises(SandboxError) as error:
        make_sandbox("e2b")
    expected = "E2B_API_KEY is not set" if has("e2b_code_interpreter") else "ai-mesh[e2b]"
    assert_one_line(error, expected)
    assert time.monotonic() - started < 5


def test_e2b_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2B_API_KEY", "e2b_" + "0" * 40)
    monkeypatch.setenv("E2B_API_URL", f"http://127.0.0.1:{closed_port()}")
    if not has("e2b_code_interpreter"):
        with pytest.raises(SandboxError) as error:
            make_sandbox("e2b")
        assert_one_line(error, "ai-mesh[e2b]")
        return
    sandbox = make_sandbox("e2b")
    with pytest.raises(SandboxError) as error:
        sandbox.run(SandboxJob(code="x = 1", tests=["assert x == 1"]))
    assert_one_line(error, "E2B is unreachable (")


def test_docker_without_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    started = time.monotonic()
    with pytest.raises(SandboxError) as error:
        make_sandbox("docker")
    expected = "Docker engine not reachable (" if has("docker") else "ai-mesh[docker]"
    assert_one_line(error, expected)
    assert time.monotonic() - started < 5
