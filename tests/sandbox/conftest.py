"""Fixtures for the sandbox tests: the real local backend (bubblewrap), no mocks."""

from __future__ import annotations

import pytest

from sandbox.local import LocalSandbox


@pytest.fixture(scope="session")
def local() -> LocalSandbox:
    """The local backend, probed once for the whole session."""
    return LocalSandbox(timeout_s=30.0, memory_mb=512)
