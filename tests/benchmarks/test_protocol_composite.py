"""The composite of two protocol reports: each problem's row from one run, the later one where it
ran the problem, only the columns both measured, paired tests over the whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.eval_protocol import ProblemRow
from app.eval_report import report
from benchmarks import protocol_composite
from benchmarks.humaneval_protocol_chart import protocol_chart


def _report(path: Path, rows: list[ProblemRow], model: str = "m") -> Path:
    header = {"eval_id": path.stem, "model": model, "options": {"k": 3}}
    path.write_text(json.dumps(report(rows, header)))
    return path


def _row(
    task: str, public: int, *, loop: bool, blind: bool, codet: bool | None = None
) -> ProblemRow:
    return ProblemRow(
        index=0, task_id=task, public_tests=public, greedy=blind, blind=blind, blind_any=True,
        loop=loop, loop_calls=1, blind_calls=3, codet=codet,
    )  # fmt: skip


def test_the_later_run_replaces_its_problems_and_the_pairs_stay_paired(tmp_path: Path) -> None:
    base = _report(tmp_path / "base.json", [
        _row("T0", 2, loop=True, blind=True),
        _row("T1", 0, loop=False, blind=False),
        _row("T2", 0, loop=False, blind=True),
    ])  # fmt: skip
    update = _report(tmp_path / "update.json", [
        _row("T1", 0, loop=True, blind=False, codet=True),
        _row("T2", 0, loop=True, blind=False, codet=True),
    ])  # fmt: skip
    payload: dict[str, Any] = protocol_composite.main(
        [str(base), str(update), "--name", "c", "--results-dir", str(tmp_path)]
    )
    assert [r["task_id"] for r in payload["rows"]] == ["T0", "T1", "T2"]
    assert [r["index"] for r in payload["rows"]] == [0, 1, 2]
    assert payload["columns"]["loop"]["solved"] == 3 and payload["columns"]["blind"]["solved"] == 1
    assert "codet" not in payload["columns"]  # the base never measured it
    loop_blind = next(
        t for t in payload["paired_exact_mcnemar"] if (t["first"], t["second"]) == ("loop", "blind")
    )
    assert (loop_blind["only_first"], loop_blind["only_second"]) == (2, 0)
    assert payload["composite"]["base"]["problems"] == 1
    assert payload["composite"]["update"]["problems"] == 2
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(payload))
    protocol_chart(payload, tmp_path / "c.png")  # the protocol's chart draws it
    assert (tmp_path / "c.png").stat().st_size > 0


def test_two_models_make_no_composite(tmp_path: Path) -> None:
    base = _report(tmp_path / "base.json", [_row("T0", 1, loop=True, blind=True)])
    other = _report(tmp_path / "other.json", [_row("T0", 1, loop=True, blind=True)], model="n")
    with pytest.raises(SystemExit, match="one model"):
        protocol_composite.composite(base, other)
