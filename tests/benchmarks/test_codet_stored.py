"""CodeT's choice on a report's stored candidates, with the scripted TEST DOUBLE: the same pick as
the eval's own column (f) (same candidates, same written tests), paired against (b), resumed by
the same command; by default only the problems without public tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from benchmarks import codet_stored


def test_the_stored_candidates_give_the_evals_own_codet_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIMESH_MEMORY_ENABLED", "false")
    source = tmp_path / "report.json"
    done = CliRunner().invoke(app, ["eval", "--llm", "scripted", "--count", "3", "--oracle-limit",
                                    "0", "--no-completion", "--json", str(source)])  # fmt: skip
    assert done.exit_code == 0, done.output
    evaluated = {r["task_id"]: r for r in json.loads(source.read_text())["rows"]}
    argv = [str(source), "--all", "--llm", "scripted",
            "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path)]  # fmt: skip
    first = codet_stored.main(argv)
    assert first["problems"] == 3
    for row in first["rows"]:
        assert row["codet_chosen"] == evaluated[row["task_id"]]["codet_chosen"]
        assert row["codet"] == evaluated[row["task_id"]]["codet"]
        assert row["codet_tests"] == evaluated[row["task_id"]]["codet_tests"]
    picks = {r["task_id"]: r["codet_chosen"] for r in first["rows"]}
    assert picks["HumanEval-0"] == 1  # the double's written tests: a right sample, not the greedy
    assert first["codet_minus_blind"]["n"] == 3
    assert first["choices_differ"] == sum(
        r["codet_chosen"] != r["blind_chosen"] for r in evaluated.values()
    )
    for column in first["columns"].values():
        low, high = column["ci95"]
        assert 0 <= low <= column["rate"] <= high <= 1
    assert (tmp_path / "codet_stored.png").stat().st_size > 0
    rows = (tmp_path / "run" / "rows.jsonl").read_text().splitlines()
    (tmp_path / "run" / "rows.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    again = codet_stored.main(argv)
    assert [s["rows_added"] for s in again["segments"]] == [3, 1]
    assert again["columns"] == first["columns"]


def test_by_default_only_problems_without_public_tests_are_chosen(tmp_path: Path) -> None:
    rows = [
        {"task_id": "a", "public_tests": 0, "candidates": ["x", "y", "z"]},
        {"task_id": "b", "public_tests": 2, "candidates": ["x", "y", "z"]},
        {"task_id": "c", "public_tests": 0, "candidates": []},  # a failed problem: no candidate
    ]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"rows": rows}))
    assert [r["task_id"] for r in codet_stored.chosen_rows(report, everything=False)] == ["a"]
    assert [r["task_id"] for r in codet_stored.chosen_rows(report, everything=True)] == ["a", "b"]
    report.write_text(json.dumps({"rows": [{"task_id": "a", "public_tests": 0}]}))
    with pytest.raises(SystemExit, match="keeps no candidates"):
        codet_stored.chosen_rows(report, everything=False)
