"""`aimesh eval --count 5 --llm scripted` runs the whole protocol: every column with its interval,
paired tests, the machine and commit recorded, no hidden test reaching a prompt outside the
oracle column, and a resumed run that finishes only what was missing."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import app.cli.evaluate as evaluate_cli
from app.cli.main import app
from app.services import build_context
from foundation.settings import Settings
from graph.context import MeshContext
from graph.datasets import humaneval_tasks
from llm.scripted import ScriptedChatModel

COLUMNS = {"greedy", "blind", "blind_any", "loop", "oracle", "completion", "codet"}


def _run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[dict[str, Any], list[MeshContext], str]:
    """Run `aimesh eval` in process; the report, the contexts it built (their scripted double
    keeps every prompt) and the output."""
    monkeypatch.setenv("AIMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIMESH_MEMORY_ENABLED", "false")
    monkeypatch.setenv("COLUMNS", "200")
    built: list[MeshContext] = []

    def recording(settings: Settings, **kwargs: Any) -> MeshContext:
        built.append(build_context(settings, **kwargs))
        return built[-1]

    monkeypatch.setattr(evaluate_cli, "build_context", recording)
    out = tmp_path / "report.json"
    done = CliRunner().invoke(app, ["eval", "--llm", "scripted", "--json", str(out), *args])
    assert done.exit_code == 0, done.output
    return json.loads(out.read_text()), built, done.output


def _prompts(contexts: list[MeshContext]) -> list[str]:
    seen: list[str] = []
    for context in contexts:
        assert isinstance(context.llm, ScriptedChatModel)
        seen += context.llm.prompts_seen
    return seen


def _leaks(prompts: list[str], limit: int) -> list[str]:
    """Hidden tests' argument lists found in a prompt about their own problem."""
    return [
        args
        for entry_point, args in _hidden_calls(limit)
        for prompt in prompts
        if f"def {entry_point}(" in prompt and args in prompt
    ]


def _hidden_calls(limit: int) -> list[tuple[str, str]]:
    """(entry point, argument list) of every hidden test's call that the statement does not
    show."""
    found = []
    for task in humaneval_tasks(limit):
        for test in task.hidden_tests:
            for node in ast.walk(ast.parse(test)):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "candidate":
                    args = ", ".join(ast.unparse(a) for a in node.args)
                    if args and args not in task.statement:
                        found.append((task.entry_point, args))
    return found


def test_the_protocol_reports_every_column_with_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, contexts, output = _run(tmp_path, monkeypatch, "--count", "5")
    assert report["problems"] == 5 and set(report["columns"]) == COLUMNS
    for column in report["columns"].values():
        low, high = column["ci95"]
        assert 0 <= low <= column["rate"] <= high <= 1 and column["n"] == 5
    solved = {key: c["solved"] for key, c in report["columns"].items()}
    # the double: truncate_number right at once; has_close_elements passes its examples but not
    # the hidden tests (a sample is right); below_zero fails an example, fixed once it is shown;
    # mean_absolute_deviation passes its example, fixed only when a hidden case is shown
    assert solved == {
        "greedy": 1,
        "blind": 2,
        "blind_any": 2,
        "loop": 2,
        "oracle": 4,
        "completion": 1,
        "codet": 2,
    }
    assert "ORACLE FEEDBACK" in report["columns"]["oracle"]["label"]
    assert "upper bound" in report["columns"]["blind_any"]["label"]
    # (b) and (c) spend at most K model calls
    assert report["columns"]["blind"]["calls_per_problem"] == 3
    assert report["columns"]["loop"]["calls_per_problem"] <= 3
    # (f) chooses among (b)'s candidates: one more call, to write tests
    assert report["columns"]["codet"]["calls_per_problem"] == 4
    assert "K+1" in report["columns"]["codet"]["label"]
    rows = {r["task_id"]: r for r in report["rows"]}
    # the double writes 2 asserts and one that does not call the function (dropped); for
    # has_close_elements the two right samples pass both, the greedy answer one: a sample wins
    assert rows["HumanEval-0"]["codet_tests"] == 2 and rows["HumanEval-0"]["codet_chosen"] == 1
    assert rows["HumanEval-1"]["codet_tests"] == 0  # unknown to the double: nothing usable
    # the K candidates are kept with their hidden verdicts: (b) and (b') follow from them
    for row in report["rows"]:
        assert len(row["candidates"]) == len(row["candidates_hidden"]) == 3
        assert row["candidates"][0] == row["greedy_code"]
        assert row["blind"] == row["candidates_hidden"][row["blind_chosen"]]
        assert row["blind_any"] == any(row["candidates_hidden"])
    pairs = {(t["first"], t["second"]) for t in report["paired_exact_mcnemar"]}
    assert {("loop", "blind"), ("loop", "greedy")} <= pairs
    assert report["solved_at_attempt"]["loop"] == {"1": 1, "2": 1}
    assert {"cpu", "cores"} <= set(report["machine"]) and len(report["commit"]) == 40
    assert {"load_before", "load_after"} <= set(report["segments"][0])
    assert "greedy_at_least_58" in report["goals"]
    assert "(c) loop, public feedback only" in output and "exact McNemar" in output
    # the oracle column is the one place hidden tests reach a prompt: the check below can see them
    assert _leaks(_prompts(contexts), 5)


def test_no_hidden_test_reaches_a_prompt_outside_the_oracle_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, contexts, _ = _run(tmp_path, monkeypatch, "--count", "5", "--oracle-limit", "0")
    assert "oracle" not in report["columns"] and report["columns"]["loop"]["solved"] == 2
    prompts = _prompts(contexts)
    assert any("Implement `below_zero`" in p and "FAILED" in p for p in prompts)  # a retry
    assert not any("Hidden tests" in p for p in prompts)
    assert sum("test cases for `" in p for p in prompts) == 5  # (f)'s test-writing requests
    assert not _leaks(prompts, 5)


def test_an_interrupted_eval_resumes_with_the_missing_problems_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, _, _ = _run(tmp_path, monkeypatch, "--count", "4")
    eval_id = report["eval_id"]
    rows = tmp_path / "data" / "evals" / f"{eval_id}.jsonl"
    lines = rows.read_text().splitlines()
    rows.write_text("\n".join(lines[:2]) + "\n")  # as if stopped after two problems
    manifest = rows.with_suffix(".json")
    started = json.loads(manifest.read_text())
    del started["segments"][-1]["ended"]  # killed before it could write its end
    manifest.write_text(json.dumps(started))
    partial, _, _ = _run(tmp_path, monkeypatch, "--resume", eval_id, "--report-only")
    assert partial["problems"] == 2 and partial["segments"][-1]["interrupted"] is True
    again, contexts, _ = _run(tmp_path, monkeypatch, "--resume", eval_id)
    assert again["problems"] == 4 and len(again["segments"]) == 2
    assert again["columns"] == report["columns"]
    prompts = "\n".join(_prompts(contexts))
    # rows are stored as problems finish (several run at once): the kept ones are not rerun
    kept = {json.loads(line)["task_id"] for line in lines[:2]}
    for task in humaneval_tasks(4):
        assert (f"def {task.entry_point}(" in prompts) == (task.task_id not in kept)


def test_an_eval_continues_from_its_report_where_the_data_dir_lost_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report keeps every finished row: on a machine without the eval's data dir, the same
    `--resume ID --json REPORT` continues it."""
    report, _, _ = _run(tmp_path, monkeypatch, "--count", "3")
    out = tmp_path / "report.json"
    partial = {**report, "rows": report["rows"][:1]}
    del partial["segments"][-1]["ended"]  # the machine went down mid-run
    out.write_text(json.dumps(partial))
    (tmp_path / "data" / "evals").rename(tmp_path / "lost")
    again, contexts, _ = _run(tmp_path, monkeypatch, "--resume", report["eval_id"])
    assert again["problems"] == 3 and again["columns"] == report["columns"]
    assert again["segments"][0]["interrupted"] is True and len(again["segments"]) == 2
    prompts = "\n".join(_prompts(contexts))
    assert "truncate_number" in prompts and "has_close_elements" not in prompts


def test_an_eval_started_before_the_codet_column_resumes_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest without `codet` and rows without its fields still load: the resumed problems
    get column (f), the stored ones keep theirs, and the column's n says so."""
    report, _, _ = _run(tmp_path, monkeypatch, "--count", "4")
    rows = tmp_path / "data" / "evals" / f"{report['eval_id']}.jsonl"
    old = [json.loads(line) for line in rows.read_text().splitlines()[:2]]
    for row in old:
        for key in ("codet", "codet_chosen", "codet_tests", "codet_calls"):
            del row[key]
    rows.write_text("".join(json.dumps(row) + "\n" for row in old))
    manifest = rows.with_suffix(".json")
    started = json.loads(manifest.read_text())
    del started["options"]["codet"]
    manifest.write_text(json.dumps(started))
    again, _, _ = _run(tmp_path, monkeypatch, "--resume", report["eval_id"])
    assert again["problems"] == 4 and again["columns"]["codet"]["n"] == 2
    assert again["columns"]["blind"] == report["columns"]["blind"]


def test_no_codet_leaves_column_f_and_its_call_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, contexts, _ = _run(
        tmp_path, monkeypatch, "--count", "2", "--no-codet", "--oracle-limit", "0"
    )
    assert "codet" not in report["columns"] and report["options"]["codet"] is False
    assert not any("test cases for `" in p for p in _prompts(contexts))
