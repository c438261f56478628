"""Fixtures for the sandbox tests: the real backends, no mocks.

`isolated` is each isolating backend in turn: local (bubblewrap) and docker. The docker one is
skipped, with the reason, only where no Docker engine can run (`make test` starts dockerd where
it can: scripts/start_docker.sh).
"""

from __future__ import annotations

import pytest

from sandbox import SandboxError
from sandbox.docker import DockerSandbox
from sandbox.docker_image import docker_client
from sandbox.local import LocalSandbox
from sandbox.protocol import HarnessSandbox


@pytest.fixture(scope="session")
def local() -> LocalSandbox:
    """The local backend, probed once for the whole session."""
    return LocalSandbox(timeout_s=30.0, memory_mb=512)


@pytest.fixture(scope="session")
def docker() -> DockerSandbox:
    """The docker backend on its default image (built from the host's Python on first use).
    Skipped only where no engine answers; any other failure of the backend is a test failure."""
    try:
        docker_client()
    except SandboxError as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    return DockerSandbox(timeout_s=30.0, memory_mb=512)


@pytest.fixture(scope="session", params=["local", "docker"])
def isolated(request: pytest.FixtureRequest) -> HarnessSandbox:
    """Each isolating backend, for the attack and reward-hacking suites."""
    backend: HarnessSandbox = request.getfixturevalue(request.param)
    return backend
