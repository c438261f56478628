"""`aimesh memory list | search | export | clear`, in process, on a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from memtest import (
    BINARY_SEARCH,
    BINARY_SEARCH_FAILED,
    BINARY_SEARCH_FIXED,
    BINARY_SEARCH_LIKE,
    TIMEOUT_ERROR,
)
from typer.testing import CliRunner

from app.cli.memory import memory_app
from foundation.settings import Settings
from memory import AgentMemory

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir with two memories, made the CLI's (AIMESH_DATA_DIR)."""
    data = tmp_path / "data"
    with AgentMemory.from_settings(Settings(data_dir=data)) as memory:
        memory.record_task("t-1", "search", 3, BINARY_SEARCH)
        memory.record_fix_recipe(
            BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED
        )
    monkeypatch.setenv("AIMESH_DATA_DIR", str(data))
    yield data


def test_list_shows_counts_and_memories(data_dir: Path) -> None:
    result = runner.invoke(memory_app, ["list"])
    assert result.exit_code == 0, result.output
    assert "fix_recipe: 1, task: 1" in result.output
    assert "Fix recipe for task" in result.output
    result = runner.invoke(memory_app, ["list", "--kind", "task", "--json"])
    [row] = [json.loads(line) for line in result.output.splitlines()]
    assert row["kind"] == "task" and row["metadata"]["task_id"] == "t-1"
    result = runner.invoke(memory_app, ["list", "--count", "1", "--json"])
    assert len(result.output.splitlines()) == 1


def test_search_export_and_clear(data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(memory_app, ["search", BINARY_SEARCH_LIKE, "--kind", "fix_recipe"])
    assert result.exit_code == 0, result.output
    assert "score" in result.output and "Fix recipe for task" in result.output
    for how_many in (["--count", "1"], ["-k", "2"]):  # -k: the k of top-k, --count its long name
        result = runner.invoke(memory_app, ["search", BINARY_SEARCH_LIKE, *how_many, "--json"])
        assert len(result.output.splitlines()) == int(how_many[1]), result.output

    target = tmp_path / "export.jsonl"
    result = runner.invoke(memory_app, ["export", str(target)])
    assert result.exit_code == 0 and "exported 2 memories" in result.output
    assert len(target.read_text().splitlines()) == 2

    result = runner.invoke(memory_app, ["clear"], input="n\n")
    assert result.exit_code == 1 and "delete 2 memories" in result.output
    assert "nothing deleted: 2 memories kept" in result.stderr
    result = runner.invoke(memory_app, ["clear"], input="")  # no terminal: nothing to read
    assert result.exit_code == 2
    assert "error: no answer to the confirmation (no terminal?): pass --yes" in result.stderr
    result = runner.invoke(memory_app, ["clear", "--kind", "task", "--yes"])
    assert result.exit_code == 0 and "deleted 1 memories" in result.output
    result = runner.invoke(memory_app, ["clear"], input="y\n")
    assert result.exit_code == 0 and "deleted 1 memories" in result.output
    result = runner.invoke(memory_app, ["clear", "--yes"])
    assert result.exit_code == 0 and "nothing to clear" in result.output


def test_bad_kind_and_unreachable_store_are_readable_errors(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(memory_app, ["list", "--kind", "bogus"])
    assert result.exit_code == 2 and "not one of" in result.output
    monkeypatch.setenv("AIMESH_MEMORY_BACKEND", "chroma")
    monkeypatch.setenv("AIMESH_MEMORY_CHROMA_PORT", "9")
    monkeypatch.setenv("AIMESH_MEMORY_CHROMA_TIMEOUT_S", "0.5")
    result = runner.invoke(memory_app, ["list"])
    assert result.exit_code == 2
    assert "no Chroma server answers at 127.0.0.1:9" in result.output
