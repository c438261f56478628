"""The HumanEval chart reads eval reports: solved-within-k curves and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

from app.humaneval import summarise
from benchmarks.humaneval_chart import chart, load, shared_problems, solved_within
from graph.state import TaskOutcome


def _outcome(index: int, attempts: int, passed: bool) -> TaskOutcome:
    return TaskOutcome(
        index=index,
        task_id=f"HumanEval-{index}",
        category="humaneval",
        difficulty=5,
        attempts=attempts,
        first_attempt_passed=passed and attempts == 1,
        passed=passed,
        reward=1.0 if passed else 0.0,
        verdict="",
        tokens=10,
        seconds=1.0,
    )


OUTCOMES = [_outcome(0, 1, True), _outcome(1, 2, True), _outcome(2, 3, True), _outcome(3, 3, False)]


def test_solved_within_counts_problems_solved_by_each_attempt_budget() -> None:
    assert solved_within(OUTCOMES, 3) == [25.0, 50.0, 75.0]


def test_the_chart_is_drawn_from_eval_reports(tmp_path: Path) -> None:
    summary = summarise(
        OUTCOMES,
        3,
        "qwen2.5-coder-0.5b-instruct",
        memory=False,
        retry_strategy="resample",
        total_seconds=4.0,
    )
    report = tmp_path / "report.json"
    rows = [o.model_dump() for o in OUTCOMES]
    report.write_text(json.dumps({"summary": summary.model_dump(), "problems": rows}))
    out = tmp_path / "chart.png"
    chart([report, report], out)
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000

    shorter = tmp_path / "shorter.json"
    shorter.write_text(json.dumps({"summary": summary.model_dump(), "problems": rows[1:3]}))
    cut = shared_problems([load(report), load(shorter)])
    assert [[o.task_id for o in outcomes] for _, outcomes in cut] == [
        ["HumanEval-1", "HumanEval-2"]
    ] * 2
    assert [summary.problems for summary, _ in cut] == [2, 2]
    chart([report, shorter], out, shared=True)


def test_the_protocol_chart_is_drawn_from_a_protocol_report(tmp_path: Path) -> None:
    from app.eval_protocol import ProblemRow
    from app.eval_report import report
    from benchmarks.humaneval_protocol_chart import protocol_chart

    rows = [
        ProblemRow(
            index=0,
            task_id="A",
            greedy=True,
            blind=True,
            blind_any=True,
            loop=True,
            loop_calls=1,
            loop_submitted=1,
            oracle=True,
            oracle_calls=1,
            completion=True,
            codet=True,
            codet_calls=4,
        ),
        ProblemRow(
            index=1,
            task_id="B",
            blind_any=True,
            loop=True,
            loop_calls=2,
            loop_submitted=2,
            oracle=True,
            oracle_calls=3,
            completion=False,
            codet=False,
            codet_calls=4,
        ),
    ]
    payload = report(rows, {"model": "m", "options": {"k": 3}})
    out = tmp_path / "protocol.png"
    assert payload["columns"]["codet"]["calls_per_problem"] == 4
    protocol_chart(payload, out)
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000


def test_a_report_without_oracle_feedback_draws_no_oracle_bars() -> None:
    from benchmarks.humaneval_protocol_chart import loops_drawn

    assert [key for key, _ in loops_drawn({"loop": {}, "oracle": {}})] == ["loop", "oracle"]
    assert [key for key, _ in loops_drawn({"loop": {}, "blind": {}})] == ["loop"]
