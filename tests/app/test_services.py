"""The services a worker builds: memory only where one of its nodes uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.services import recorded_step
from foundation.settings import Settings
from memory import AgentMemory

ROOT = Path(__file__).resolve().parents[2]


class _MemoryOpenedError(Exception):
    """Raised by the test double standing in for `AgentMemory.from_settings`."""


@pytest.fixture
def memory_opens_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def opened_double(*_args: object, **_kwargs: object) -> AgentMemory:
        raise _MemoryOpenedError

    monkeypatch.setattr(AgentMemory, "from_settings", opened_double)


@pytest.mark.usefixtures("memory_opens_raise")
def test_a_supervisor_worker_does_not_open_memory(scripted_settings: Settings) -> None:
    assert callable(recorded_step(scripted_settings, nodes=("supervisor",)))


@pytest.mark.usefixtures("memory_opens_raise")
@pytest.mark.parametrize("nodes", [("consumer",), ("supervisor", "reviewer"), None])
def test_a_worker_of_a_node_with_memory_opens_it(
    scripted_settings: Settings, nodes: tuple[str, ...] | None
) -> None:
    with pytest.raises(_MemoryOpenedError):
        recorded_step(scripted_settings, nodes=nodes)


def test_chromadb_imports_without_compiling_the_iri_grammar() -> None:
    code = (
        "import sys\n"
        "from memory.mem0_setup import skip_iri_grammar\n"
        "skip_iri_grammar()\n"
        "import chromadb, jsonschema\n"
        "print(sys.modules['rfc3987_syntax'] is None, 'lark' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "False"]
