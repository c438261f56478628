"""The repetition-penalty benchmark on a few HumanEval problems with the scripted TEST DOUBLE
(which ignores the penalty, so both arms answer alike): arms paired per problem, JSON and chart
written, an interrupted run resumed by the same command."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import repeat_penalty


def test_arms_are_paired_per_problem_and_the_run_resumes(tmp_path: Path) -> None:
    argv = ["--llm", "scripted", "--limit", "3", "--penalties", "1.1,1.0",
            "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path)]  # fmt: skip
    first = repeat_penalty.main(argv)
    assert list(first["arms"]) == ["penalty 1.1", "penalty 1"]
    assert first["problems"] == 3
    difference = first["differences"]["penalty 1 - penalty 1.1"]
    assert difference["all"]["n"] == 3 and difference["answers_differ"] == 0
    assert difference["late_problems"]["n"] == 0  # the first 3 problems are not late ones
    for arm in first["arms"].values():
        low, high = arm["pass_at_1"]["ci95"]
        assert 0 <= low <= arm["pass_at_1"]["rate"] <= high <= 1
    assert (tmp_path / "repeat_penalty.png").stat().st_size > 0
    rows = (tmp_path / "run" / "rows.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["key"] == "penalty 1/2"
    (tmp_path / "run" / "rows.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    again = repeat_penalty.main(argv)
    assert [s["rows_added"] for s in again["segments"]] == [6, 1]
    assert again["problems"] == 3
