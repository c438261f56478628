"""Shared fixtures: the real 0.5b model, assembled once into the project cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.settings import Settings
from llm.local_model import ensure_model


@pytest.fixture(scope="session")
def real_model() -> Path:
    """The real 0.5b GGUF in the project cache (downloaded and assembled on the first run)."""
    return ensure_model("0.5b", Settings().cache_dir)
