"""Wire schemas, keys, headers, routing of transitions to topics, and decode errors (no broker)."""

from __future__ import annotations

import json

import pytest
from kafka_stand_in import stand_in_step, stand_in_task

from graph.edges import StepRecord
from graph.routing import ROUTES, input_topic, topic_for_transition
from graph.state import MeshState
from graph.topics import AI_REPORTS, AI_REQUESTS, AI_REVIEWS, AI_SOLUTIONS, AI_TOPIC, AI_VERIFIED
from graph.wire import (
    ReportMessage,
    ReviewMessage,
    SolutionMessage,
    TaskMessage,
    TaskRequest,
    TelemetryEvent,
    VerifiedSolutionMessage,
    decode_topic,
    message_for_step,
)
from kafka_edges.codec import SCHEMA_VERSION, MessageDecodeError, decode, encode, headers_dict
from kafka_edges.dead_letters import DeadLetter, dead_letter_for


def _walk(statement: str = "add FAIL_FIRST") -> list[StepRecord]:
    """Every step of one task through the stand-in nodes (with one retry)."""
    state = MeshState(task_index=3)
    node = "producer"
    records = []
    while node != "__end__":
        _, record = stand_in_step(node, state)
        if node == "producer":  # give the task the marker
            record = record.model_copy(
                update={"state": record.state.model_copy(update={"task": stand_in_task(statement)})}
            )
        records.append(record)
        state, node = record.state, record.next_node
    return records


def test_topic_of_each_transition_is_the_destination_input_topic() -> None:
    assert {node: route.input_topic for node, route in ROUTES.items()} == {
        "producer": AI_REQUESTS,
        "consumer": AI_TOPIC,
        "sandbox": AI_SOLUTIONS,
        "reviewer": AI_VERIFIED,
        "supervisor": AI_REVIEWS,
    }
    assert topic_for_transition("__end__") == AI_REPORTS
    assert topic_for_transition("consumer") == AI_TOPIC  # retries go back to ai_topic
    with pytest.raises(ValueError, match="unknown node"):
        input_topic("nobody")


def test_each_step_becomes_the_right_message_type() -> None:
    records = _walk()
    kinds = [(r.node, r.next_node, type(message_for_step(r))) for r in records]
    assert kinds == [
        ("producer", "consumer", TaskMessage),
        ("consumer", "sandbox", SolutionMessage),
        ("sandbox", "consumer", TaskMessage),  # the retry, with feedback
        ("consumer", "sandbox", SolutionMessage),
        ("sandbox", "reviewer", VerifiedSolutionMessage),
        ("reviewer", "supervisor", ReviewMessage),
        ("supervisor", "__end__", ReportMessage),
    ]
    retry = message_for_step(records[2])
    assert isinstance(retry, TaskMessage) and retry.retry and retry.attempt == 1
    assert retry.feedback and "0/1 tests passed" in retry.feedback
    report = message_for_step(records[-1])
    assert isinstance(report, ReportMessage)
    assert report.status == "done" and report.verdict == "ok" and report.reward == 0.9


@pytest.mark.parametrize("index", range(7))
def test_round_trip_key_headers_and_full_state(index: int) -> None:
    record = _walk()[index]
    message = message_for_step(record)
    wire = encode(message)
    assert wire.key == record.state.task.task_id.encode()  # type: ignore[union-attr]
    headers = headers_dict(wire.headers)
    assert headers["run_id"] == record.state.run_id
    assert headers["attempt"] == str(len(record.state.attempts))
    assert headers["schema_version"] == str(SCHEMA_VERSION)
    assert headers["message_type"] == message.TYPE
    assert headers["source"] == record.node
    assert (
        headers["origin"] == "worker"
    )  # message_for_step's default; the graph's sink says in_process
    back = decode(type(message), wire.value)
    assert back == message
    assert back.state == record.state  # any worker can continue from it
    assert json.loads(wire.value)["schema_version"] == SCHEMA_VERSION


def test_task_request_is_keyed_by_run_id_before_a_task_exists() -> None:
    request = TaskRequest.from_state(MeshState(task_index=2, max_attempts=4), source="feed")
    assert request.task_id == request.run_id
    assert (request.task_index, request.max_attempts, request.attempt) == (2, 4, 0)
    assert encode(request).key == request.run_id.encode()


def test_telemetry_has_the_six_required_fields() -> None:
    record = _walk()[5]  # reviewer
    event = TelemetryEvent.from_step(record)
    data = json.loads(encode(event).value)
    for name in ("agent", "timestamp", "latency_ms", "tokens_used", "reward_score", "memory_hits"):
        assert name in data
    assert data["agent"] == "reviewer" and data["reward_score"] == 0.9 and data["tokens_used"] == 3
    assert data["timestamp"].endswith("Z")  # ISO-8601, UTC
    assert {"task_id", "run_id", "attempt", "status", "prompt_version"} <= set(data)
    early = json.loads(encode(TelemetryEvent.from_step(_walk()[0])).value)
    assert early["reward_score"] is None  # present, but not scored yet


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b"", "empty_value"),
        (None, "empty_value"),
        (b"[1, 2]", "schema_invalid"),
        (b'{"schema_version": 1, "task_id": "x"}', "schema_invalid"),
        (b'{"schema_version": 99}', "unsupported_schema_version"),
        (b'{"no_version": true}', "unsupported_schema_version"),
    ],
)
def test_decode_rejects_unusable_values_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode(TaskMessage, value)
    assert caught.value.reason == reason
    assert caught.value.detail  # readable


def test_decode_rejects_inconsistent_identity() -> None:
    message = message_for_step(_walk()[1])
    data = json.loads(encode(message).value)
    data["run_id"] = "someone-else"
    with pytest.raises(MessageDecodeError, match="run_id") as caught:
        decode(SolutionMessage, json.dumps(data).encode())
    assert caught.value.reason == "schema_invalid"
    # a solution is not a task: the wrong model for the topic is schema-invalid too
    with pytest.raises(MessageDecodeError) as wrong:
        decode_topic(AI_TOPIC, encode(message).value)
    assert wrong.value.reason == "schema_invalid"


def test_dead_letter_keeps_the_raw_bytes() -> None:
    raw = b"\x00\xffbinary"
    dead = dead_letter_for(
        reason="not_utf8", error="bad", topic="ai_topic", partition=1, offset=7,
        key=b"k", value=raw, headers=[("run_id", b"r1"), ("attempt", b"2")], role="consumer",
    )  # fmt: skip
    assert dead.raw_encoding == "base64" and dead.raw_bytes() == raw
    assert (dead.run_id, dead.attempt, dead.partition, dead.offset) == ("r1", 2, 1, 7)
    back = decode(DeadLetter, encode(dead).value)
    assert back.raw_bytes() == raw and back.reason == "not_utf8"
    text = dead_letter_for(
        reason="malformed_json", error="x", topic="t", partition=0, offset=0,
        key=None, value=b"{oops", headers=None,
    )  # fmt: skip
    assert text.raw_encoding == "utf-8" and text.raw_value == "{oops"
