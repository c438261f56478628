from dashboard.schema import parse_report
from graph.state import TaskOutcome
from graph.wire import BatchAuditMessage
from kafka_edges.codec import encode
from nodes.supervisor import audit_batch


def _outcome(
    index: int, reward: float, passed: bool, verdict: str = "ok", **kw: object
) -> TaskOutcome:
    fields = dict(
        index=index, task_id=f"t{index}", category="c", difficulty=1, attempts=1,
        first_attempt_passed=passed, passed=passed, reward=reward, verdict=verdict,
        tokens=100, seconds=1.0,
    )  # fmt: skip
    return TaskOutcome.model_validate({**fields, **kw})


def test_a_clean_batch_is_ok_with_its_pass_rate_and_trend() -> None:
    audit = audit_batch("b", [_outcome(i, 0.5 + 0.1 * i, True) for i in range(4)], 300, 20_000)
    assert audit.verdict == "ok" and audit.pass_rate == 1.0 and audit.anomalies == []
    assert audit.reward_trend == 0.1 and audit.tokens_used == 400


def test_falling_rewards_budget_overruns_and_flags_are_anomalies() -> None:
    outcomes = [
        _outcome(0, 1.0, True),
        _outcome(1, 0.8, True, seconds=900.0),
        _outcome(2, 0.3, False, error="producer gave up"),
        _outcome(3, 0.1, False, verdict="flag"),
    ]
    audit = audit_batch("b", outcomes, 300, 20_000)
    assert audit.verdict == "flag" and audit.pass_rate == 0.5
    joined = "\n".join(audit.anomalies)
    for expected in ("task 4 flagged", "task 3 failed: producer gave up", "task 2 over budget",
                     "reward falling"):  # fmt: skip
        assert expected in joined


def test_the_batch_audit_message_is_a_report_the_dashboard_reads() -> None:
    audit = audit_batch("b7", [_outcome(0, 0.2, False)], 300, 20_000)
    record = parse_report(encode(BatchAuditMessage.of(audit)).value)
    assert record.task_id == "batch-b7" and record.verdict == "warn"
    assert record.summary.startswith("Batch b7: 1 task(s), pass rate 0%")


def test_a_batch_run_side_by_side_is_timed_by_its_wall_clock() -> None:
    outcomes = [_outcome(i, 0.9, True, seconds=30.0) for i in range(4)]
    assert audit_batch("b", outcomes, 300, 20_000).wall_time_s == 120.0  # one after another
    audit = audit_batch("b", outcomes, 300, 20_000, wall_time_s=41.26)
    assert audit.wall_time_s == 41.26 and "41.3s wall time" in audit.summary
