"""The dashboard's aggregates, fed the mesh's own wire messages (no broker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.aggregates import Aggregator
from dashboard.schema import RecordError, parse_report, parse_telemetry
from kafka_edges.codec import encode

NOW = datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def agg() -> Aggregator:
    return Aggregator(clock=lambda: NOW.timestamp())


def feed(agg: Aggregator, run, *, report: bool = True) -> None:
    for event in run.events:
        assert agg.ingest("ai_telemetry", encode(event).value)
    if report:
        assert agg.ingest("ai_reports", encode(run.report).value)


def test_totals_rates_and_outcomes_from_mesh_messages(agg: Aggregator, mesh_run: Callable) -> None:
    feed(agg, mesh_run("t1", passed=True, reward=0.9, at=NOW - timedelta(seconds=10)))
    feed(agg, mesh_run("t2", passed=True, reward=0.7, at=NOW - timedelta(seconds=20)))
    feed(
        agg,
        mesh_run(
            "t3",
            passed=False,
            reward=0.2,
            verdict="warn",
            findings=("unsolved after 1 attempt(s)",),
            at=NOW - timedelta(minutes=5),
        ),
    )

    snap = agg.snapshot()
    totals = snap["totals"]
    assert totals["events"] == 15
    assert totals["reports"] == 3
    assert totals["tasks_finished"] == 3
    assert (totals["tasks_passed"], totals["tasks_failed"], totals["tasks_unknown"]) == (2, 1, 0)
    assert totals["pass_rate"] == pytest.approx(2 / 3)
    assert totals["tasks_per_min"] == 2  # t3 finished five minutes ago
    assert totals["mean_reward"] == pytest.approx(0.6)
    assert snap["verdicts"] == {"ok": 2, "warn": 1, "flag": 0}
    assert [p["task_id"] for p in snap["reward"]] == ["t3", "t2", "t1"]  # ordered by time
    assert snap["reward"][-1]["mean"] == pytest.approx(0.6)
    assert sum(b["passed"] for b in snap["throughput"]) == 2
    assert sum(b["failed"] for b in snap["throughput"]) == 1
    (failure,) = snap["failures"]
    assert failure["task_id"] == "t3"
    assert "AssertionError" in failure["reason"]
    assert [r["task_id"] for r in snap["reports"]] == ["t1", "t2", "t3"]  # newest first
    assert snap["reports"][2]["findings"] == ["unsolved after 1 attempt(s)"]
    json.dumps(snap, allow_nan=False)  # the snapshot is plain JSON


def test_per_agent_latency_tokens_memory_and_prompt_versions(
    agg: Aggregator, mesh_run: Callable
) -> None:
    for i, latency in enumerate([100.0, 200.0, 300.0, 400.0]):
        feed(
            agg,
            mesh_run(
                f"t{i}",
                passed=True,
                reward=0.8,
                latency_ms={"consumer": latency},
                tokens={"consumer": 50 * (i + 1)},
                memory_hits={"consumer": 2},
                prompt_versions={"consumer": "consumer@v2" if i >= 2 else "consumer@v1"},
                at=NOW - timedelta(seconds=40 - i),
            ),
        )
    consumer = next(a for a in agg.snapshot()["agents"] if a["agent"] == "consumer")
    assert consumer["steps"] == 4
    assert consumer["latency_mean_ms"] == 250.0
    assert consumer["latency_p50_ms"] == 250.0
    assert consumer["latency_last_ms"] == 400.0
    assert consumer["latency_p95_ms"] == pytest.approx(385.0)
    assert consumer["tokens_total"] == 500
    assert consumer["tokens_mean"] == 125.0
    assert consumer["memory_hits"] == 8
    prompts = {(p["agent"], p["version"]): p for p in agg.snapshot()["prompt_versions"]}
    assert prompts[("consumer", "consumer@v1")]["steps"] == 2
    assert prompts[("consumer", "consumer@v2")]["current"] is True
    assert prompts[("consumer", "consumer@v1")]["current"] is False


def test_redelivered_messages_are_counted_once(agg: Aggregator, mesh_run: Callable) -> None:
    run = mesh_run("t1", passed=True, reward=0.9, at=NOW)
    feed(agg, run)
    feed(agg, run)  # at-least-once delivery: the same records again
    totals = agg.snapshot()["totals"]
    assert (totals["events"], totals["reports"], totals["tasks_finished"]) == (5, 1, 1)
    assert totals["duplicates"] == 6


def test_flat_report_before_telemetry_is_one_task(agg: Aggregator, mesh_run: Callable) -> None:
    flat = {
        "task_id": "t9",
        "verdict": "flag",
        "findings": ["suspicious code: os.system"],
        "summary": "flagged",
        "wall_time_s": 1.5,
        "tokens_used": 40,
    }
    assert agg.ingest("ai_reports", json.dumps(flat).encode())
    snap = agg.snapshot()
    assert snap["totals"]["tasks_finished"] == 1
    # a flat report need not say whether the code passed
    assert snap["totals"]["tasks_unknown"] == 1
    feed(agg, mesh_run("t9", passed=True, reward=0.5, at=NOW), report=False)
    snap = agg.snapshot()
    assert snap["totals"]["tasks_finished"] == 1
    assert snap["verdicts"]["flag"] == 1
    assert snap["reports"][0]["summary"] == "flagged"


def test_six_field_events_from_other_producers_are_accepted(agg: Aggregator) -> None:
    event = {
        "agent": "consumer",
        "timestamp": "2025-06-01T12:00:00Z",
        "latency_ms": 1200,
        "tokens_used": 450,
        "reward_score": 0.85,
        "memory_hits": 2,
    }
    assert agg.ingest("ai_telemetry", json.dumps(event))
    snap = agg.snapshot()
    assert snap["totals"]["events"] == 1
    assert snap["totals"]["tasks_finished"] == 0
    assert snap["agents"][0]["latency_mean_ms"] == 1200


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty_value"),
        (b"\xff\xfe", "not_utf8"),
        (b"{nope", "malformed_json"),
        (b"[1, 2]", "schema_invalid"),
        (b'{"agent": "x"}', "schema_invalid"),
        (
            b'{"agent": "x", "timestamp": "2025-06-01T12:00:00Z", "latency_ms": NaN, "tokens_used": 1, "reward_score": null, "memory_hits": 0}',
            "schema_invalid",
        ),
        (
            b'{"agent": "x", "timestamp": "2025-06-01T12:00:00Z", "latency_ms": -1, "tokens_used": 1, "reward_score": null, "memory_hits": 0}',
            "schema_invalid",
        ),
    ],
)
def test_unusable_telemetry_is_rejected_with_a_reason(
    agg: Aggregator, value: bytes, reason: str
) -> None:
    with pytest.raises(RecordError) as info:
        parse_telemetry(value)
    assert info.value.reason == reason
    assert not agg.ingest("ai_telemetry", value)
    snap = agg.snapshot()
    assert snap["totals"]["rejected"] == 1
    assert snap["rejected"][0]["reason"] == reason


def test_report_message_with_an_inconsistent_state_is_rejected(mesh_run: Callable) -> None:
    data = json.loads(encode(mesh_run("t1", passed=True, reward=0.9).report).value)
    data["task_id"] = "someone-else"
    with pytest.raises(RecordError, match="ReportMessage"):
        parse_report(json.dumps(data))


def test_version_changes_only_with_data(agg: Aggregator, mesh_run: Callable) -> None:
    before = agg.version
    assert agg.snapshot() is agg.snapshot()  # cached while nothing changes
    feed(agg, mesh_run("t1", passed=True, reward=0.9, at=NOW))
    assert agg.version > before
    agg.set_source("connected", "", bootstrap="b:1")
    version = agg.version
    agg.set_source("connected", "", bootstrap="b:1")
    assert agg.version == version
