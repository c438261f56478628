"""An unreachable prompt optimizer is an error (exit 2, one line), not rounds without candidates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from foundation.settings import Settings
from learning.learner import llm_endpoint


def test_an_unreachable_optimizer_ends_learn_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMESH_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(
        app,
        [
            "learn", "--algorithm", "apo", "--llm", "scripted", "--rounds", "1",
            "--train", "1", "--val", "1", "--optimizer-base-url", "http://127.0.0.1:1/v1",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "optimizer" in lines[0]
    assert "Traceback" not in result.output


def test_the_optimizer_is_its_own_setting(tmp_path: Path) -> None:
    settings = Settings(
        llm="scripted",
        data_dir=tmp_path,
        optimizer_base_url="http://optimizer.invalid/v1",
        optimizer_model="big-one",
    )
    with llm_endpoint(settings) as (served, optimizer):
        assert served.llm == "scripted"
        assert optimizer is not None
        assert (optimizer.base_url, optimizer.model) == ("http://optimizer.invalid/v1", "big-one")
    with llm_endpoint(Settings(llm="scripted", data_dir=tmp_path)) as (_, none):
        assert none is None
