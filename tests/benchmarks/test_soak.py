"""The soak benchmark's counting (pure functions; the soak itself is `benchmarks.soak`)."""

from __future__ import annotations

import json

from benchmarks.soak import (
    Kill,
    Seen,
    first_after,
    recovery_after,
    replacement_summary,
    report_counts,
    steps_executed_twice,
)


def _edge(run: str, attempt: int, source: str, extra: str = "", generation: int = 0) -> Seen:
    value = json.dumps({"run_id": run, "attempt": attempt, "source": source, "x": extra})
    return Seen(generation, "ai_solutions", value.encode(), 0.0)


def test_lost_duplicated_and_unexpected_reports() -> None:
    counts = report_counts({"a", "b", "c"}, ["a", "a", "b", "zz", "a"])
    assert counts == {
        "fed": 3, "reported": 2, "reported_only_in_ledger": 0, "lost": 1, "duplicated": 2,
        "unexpected": 1,
    }  # fmt: skip
    assert report_counts({"a"}, ["a"]) == {
        "fed": 1, "reported": 1, "reported_only_in_ledger": 0, "lost": 0, "duplicated": 0,
        "unexpected": 0,
    }  # fmt: skip


def test_a_report_the_broker_lost_counts_when_the_ledger_holds_it() -> None:
    counts = report_counts({"a", "b", "c"}, ["a"], in_ledger={"a", "b", "zz"})
    assert (counts["reported"], counts["reported_only_in_ledger"], counts["lost"]) == (2, 1, 1)


def test_a_step_run_twice_differs_from_a_republished_copy() -> None:
    same = _edge("r", 0, "consumer", "one")
    records = [
        same,
        same,  # re-published byte for byte: not a second execution
        _edge("r", 0, "consumer", "two"),  # the same step's output with other bytes: ran twice
        _edge("r", 1, "consumer", "three"),  # the next attempt: another step
        _edge("r", 0, "consumer", "four", generation=1),  # after the broker restart: apart
        Seen(0, "ai_reports", same.value + b" ", 0.0),  # reports are not edges
        Seen(0, "ai_solutions", b"not json", 0.0),
    ]
    assert steps_executed_twice(records) == 1


def test_first_after() -> None:
    assert first_after([1.0, 5.0, 7.5], 4.0) == 1.0
    assert first_after([1.0], 4.0) is None


def test_recovery_after_a_fault_counts_from_the_fault() -> None:
    times = [1.0, 5.0, *[10.0 + i for i in range(12)]]
    assert recovery_after(times, 4.0) == {"reports_flow_again_s": 1.0, "tenth_report_after_s": 14.0}
    assert recovery_after(times, 30.0) == {
        "reports_flow_again_s": None,
        "tenth_report_after_s": None,
    }


def test_replacement_summary_counts_only_replacements_that_joined() -> None:
    kills = [Kill("consumer", 1, 0.0, 0, ready_s=4.0), Kill("sandbox", 2, 0.0, 1, ready_s=8.0),
             Kill("reviewer", 3, 0.0, 2)]  # fmt: skip
    assert replacement_summary(kills) == {"max": 8.0, "mean": 6.0, "n": 2, "all": [4.0, 8.0]}
