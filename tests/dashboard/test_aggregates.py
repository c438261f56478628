"""The dashboard's aggregates, fed the mesh's own wire messages (no broker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.aggregates import STALL_MIN_S, Aggregator
from dashboard.schema import RecordError, parse_report, parse_telemetry
from graph.state import BatchAudit, MeshState
from graph.wire import BatchAuditMessage, ReportMessage
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
    assert sum(b["passed"] for b in snap["throughput"]["buckets"]) == 2
    assert sum(b["failed"] for b in snap["throughput"]["buckets"]) == 1
    (failure,) = snap["failures"]
    assert failure["task_id"] == "t3"
    assert "AssertionError" in failure["reason"]
    assert failure["source"] == "sandbox"  # the tests failed it, not the supervisor reporting it
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
                prompt_versions={
                    "consumer": "consumer@v2" if i >= 2 else "consumer@v1",
                    **({"consumer.adapter": "v1"} if i == 3 else {}),
                },
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
    # the adapter each consumer step used: only the last step had one
    assert prompts[("consumer.adapter", "v1")]["steps"] == 1
    assert prompts[("consumer.adapter", "v1")]["current"] is True


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


def test_a_batch_audit_is_listed_as_a_batch_not_counted_as_a_task(
    agg: Aggregator, mesh_run: Callable
) -> None:
    for i in range(3):
        feed(agg, mesh_run(f"t{i}", passed=True, reward=0.8, at=NOW - timedelta(seconds=30 - i)))
    audit = BatchAudit(
        batch_id="b1", tasks=3, pass_rate=1.0, mean_reward=0.8, reward_trend=0.0,
        tokens_used=120, wall_time_s=9.5, anomalies=["slow task t1"], verdict="warn",
        summary="3 tasks, 3 solved",
    )  # fmt: skip
    value = encode(BatchAuditMessage.of(audit)).value
    assert agg.ingest("ai_reports", value)
    assert agg.ingest("ai_reports", value)  # redelivered
    snap = agg.snapshot()
    totals = snap["totals"]
    assert (totals["tasks_finished"], totals["tasks_unknown"], totals["reports"]) == (3, 0, 3)
    assert (totals["batches"], totals["duplicates"]) == (1, 1)
    assert snap["verdicts"]["warn"] == 0  # the batch's verdict is not a task's
    (batch,) = snap["batches"]
    assert (batch["batch_id"], batch["verdict"], batch["tasks"]) == ("b1", "warn", 3)
    assert batch["anomalies"] == ["slow task t1"]


def test_unfinished_tasks_stop_counting_as_in_progress_once_the_mesh_is_idle(
    mesh_run: Callable,
) -> None:
    now = [NOW.timestamp()]
    agg = Aggregator(clock=lambda: now[0])
    done = mesh_run("t1", passed=True, reward=0.9, at=NOW, latency_ms={"consumer": 4000})
    feed(agg, done)
    # a run that died after its producer and consumer steps: no supervisor step, no report
    died = mesh_run("t2", passed=True, reward=0.5, at=NOW, latency_ms={"consumer": 4000})
    for event in died.events[:2]:
        agg.ingest("ai_telemetry", encode(event).value)
    totals = agg.snapshot(max_age_s=0)["totals"]
    assert (totals["tasks_in_progress"], totals["tasks_stalled"]) == (1, 0)
    assert totals["stall_window_s"] == STALL_MIN_S  # 3 x the longest step (4 s) is shorter
    now[0] += STALL_MIN_S + 1  # no step since: nothing runs any more
    totals = agg.snapshot(max_age_s=0)["totals"]
    assert (totals["tasks_in_progress"], totals["tasks_stalled"]) == (0, 1)
    assert totals["tasks_finished"] == 1


def test_the_stall_window_grows_with_the_longest_step(agg: Aggregator, mesh_run: Callable) -> None:
    feed(agg, mesh_run("t1", passed=True, reward=0.9, at=NOW, latency_ms={"consumer": 40_000}))
    assert agg.snapshot()["totals"]["stall_window_s"] == 120.0


def test_failures_name_the_node_that_failed_the_task(agg: Aggregator, mesh_run: Callable) -> None:
    feed(agg, mesh_run("t1", passed=False, reward=0.1, at=NOW))
    no_task = MeshState(run_id="r-producer", status="failed", error="the model returned no task")
    agg.ingest("ai_reports", encode(ReportMessage.from_state(no_task, source="supervisor")).value)
    sources = {f["task_id"]: (f["source"], f["reason"]) for f in agg.snapshot()["failures"]}
    assert sources["t1"][0] == "sandbox" and "AssertionError" in sources["t1"][1]
    assert sources["r-producer"] == ("producer", "the model returned no task")


def test_the_throughput_window_fits_the_data(mesh_run: Callable) -> None:
    now = [NOW.timestamp()]
    agg = Aggregator(clock=lambda: now[0])
    for i, ago in enumerate((40, 25, 5)):  # a fresh run: three tasks in 35 seconds
        feed(agg, mesh_run(f"t{i}", passed=True, reward=0.8, at=NOW - timedelta(seconds=ago)))
    throughput = agg.snapshot(max_age_s=0)["throughput"]
    assert throughput["bucket_s"] == 10
    assert 4 <= len(throughput["buckets"]) <= 5  # the run fills the chart, not one sliver of it
    assert sum(b["passed"] for b in throughput["buckets"]) == 3
    assert throughput["buckets"][-1]["t"] <= now[0] < throughput["buckets"][-1]["t"] + 10
    now[0] += 2 * 3600  # two hours later: coarser buckets, still at most 30 of them
    throughput = agg.snapshot(max_age_s=0)["throughput"]
    assert throughput["bucket_s"] == 300
    assert len(throughput["buckets"]) <= 30
    assert sum(b["passed"] for b in throughput["buckets"]) == 3


def test_a_reported_task_has_a_detail_view(agg: Aggregator, mesh_run: Callable) -> None:
    run = mesh_run("t1", passed=False, reward=0.1, at=NOW)
    feed(agg, run)
    assert agg.snapshot()["reports"][0]["has_detail"] is True
    detail = agg.task_detail("t1")
    assert detail is not None and detail == agg.task_detail("t1", run.state.run_id)
    assert detail["outcome"] == "failed" and detail["failed_at"] == "sandbox"
    (attempt,) = detail["attempts"]
    assert attempt["code"] == "def add(a, b):\n    return a + b\n"
    assert (attempt["passed"], attempt["tests_passed"], attempt["tests_total"]) == (False, 1, 3)
    assert attempt["test_counts"] == "1/3 public"  # this task hides no test
    assert attempt["error_type"] == "AssertionError"
    assert detail["review"]["critique"] == "fine"
    assert detail["review"]["scores"]["correctness"] == 0.0
    assert detail["report"]["verdict"] == "ok"
    assert detail["task"]["entry_point"] == "add"
    json.dumps(detail, allow_nan=False)
    assert agg.task_detail("t1", "another-run") is None
    assert agg.task_detail("nope") is None
