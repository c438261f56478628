"""GroupWorker with a handler that is not the mesh's: the loop knows records, not the graph."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import ClassVar

import pytest
from confluent_kafka.admin import AdminClient
from conftest import TEST_KAFKA_CONFIG

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.codec import WireModel, WireRecord, decode
from kafka_edges.config import common_config, with_logger
from kafka_edges.dead_letters import DeadLetter
from kafka_edges.delivery_policy import RetryPolicy, infrastructure_failure
from kafka_edges.group_worker import (
    ConsumedRecord,
    Delivered,
    GroupWorker,
    Identity,
    Triage,
    WorkerOptions,
)
from kafka_edges.publisher import KafkaPublisher
from kafka_edges.reader import read_topic

pytestmark = pytest.mark.broker


class Shout(WireModel):
    TOPIC: ClassVar[str] = "shout_in"
    TYPE: ClassVar[str] = "shout"
    text: str

    def wire_key(self) -> str:
        return self.text


class Shouted(WireModel):
    TOPIC: ClassVar[str] = "shout_out"
    TYPE: ClassVar[str] = "shouted"
    text: str

    def wire_key(self) -> str:
        return self.text


class ShoutHandler:
    """Upper-cases texts; 'flaky' fails twice for the infrastructure's sake, 'bad' always."""

    name = "shouter"

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.flaky_failures = 2

    def decode(self, record: ConsumedRecord) -> Shout:
        return decode(Shout, record.value)

    def triage(self, item: Shout) -> Triage:
        return Triage.DUPLICATE if item.text in self.seen else Triage.HANDLE

    def idempotency_key(self, item: Shout) -> Hashable:
        return item.text

    def leases(self) -> AbstractContextManager[Callable[[Shout], None]]:
        return nullcontext(lambda item: None)

    def handle(self, item: Shout) -> Sequence[WireModel]:
        if item.text == "flaky" and self.flaky_failures:
            self.flaky_failures -= 1
            raise InfrastructureError("the upper-casing service is down")
        if item.text == "bad":
            raise ValueError("cannot shout 'bad'")
        return [Shouted(text=item.text.upper())]

    def is_transient(self, exc: BaseException) -> bool:
        return infrastructure_failure(exc)

    def delivered(self, batch: Sequence[Delivered[Shout]]) -> None:
        self.seen.update(done.item.text for done in batch)

    def identity(self, item: Shout) -> Identity:
        return Identity(task_id=item.text)


def test_a_generic_handler_runs_in_the_group_loop(kafka_broker: EmbeddedBroker) -> None:
    prefix = f"g{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, kafka_config=TEST_KAFKA_CONFIG)
    topics = ("shout_in", "shout_out", DeadLetter.TOPIC)
    ensure_topics(AdminClient(with_logger(common_config(settings))), topics, 1, prefix=prefix)
    with KafkaPublisher(settings, topic_prefix=prefix) as publisher:
        publisher.publish_many([Shout(text=t) for t in ("a", "flaky", "bad", "a", "b")])
        publisher.publish_records([(f"{prefix}shout_in", WireRecord(b"k", b"{", []))])
    handler = ShoutHandler()
    options = WorkerOptions(topic_prefix=prefix, retry=RetryPolicy(max_tries=2, backoff_s=0.05))
    with GroupWorker(
        handler,
        "shout_in",
        settings,
        options,
        group_id=f"{prefix}shouters",
        topics_to_create=topics,
    ) as worker:
        out = read_topic(
            "shout_out", settings, models={"shout_out": Shouted}, count=3, prefix=prefix
        )
        dead = read_topic(
            DeadLetter.TOPIC,
            settings,
            models={DeadLetter.TOPIC: DeadLetter},
            count=2,
            prefix=prefix,
        )
        snap = worker.stats.snapshot()
    assert [r.message.text for r in out if isinstance(r.message, Shouted)] == ["A", "FLAKY", "B"]
    reasons = sorted(r.message.reason for r in dead if isinstance(r.message, DeadLetter))
    assert reasons == ["malformed_json", "node_error"]
    assert snap["processed"] == 3 and snap["duplicates"] == 1 and snap["dead_lettered"] == 2
    assert snap["transient_errors"] == 2 and snap["node_errors"] == 2


def test_a_redelivery_inside_one_batch_is_a_duplicate(kafka_broker: EmbeddedBroker) -> None:
    """The handler's triage only knows delivered batches: the batch itself knows the rest."""
    prefix = f"g{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, kafka_config=TEST_KAFKA_CONFIG)
    topics = ("shout_in", "shout_out", DeadLetter.TOPIC)
    ensure_topics(AdminClient(with_logger(common_config(settings))), topics, 1, prefix=prefix)
    with KafkaPublisher(settings, topic_prefix=prefix) as publisher:
        publisher.publish_many([Shout(text=t) for t in ("x", "x", "y")])
    options = WorkerOptions(topic_prefix=prefix, max_batch_s=30.0)
    with GroupWorker(
        ShoutHandler(),
        "shout_in",
        settings,
        options,
        group_id=f"{prefix}g",
        topics_to_create=topics,
    ) as worker:
        out = read_topic(
            "shout_out", settings, models={"shout_out": Shouted}, count=2, prefix=prefix
        )
        snap = worker.stats.snapshot()
    assert [r.message.text for r in out if isinstance(r.message, Shouted)] == ["X", "Y"]
    assert snap["processed"] == 2 and snap["duplicates"] == 1


class LockedOnceHandler(ShoutHandler):
    """TEST DOUBLE: its duplicate lookup fails once on 'locked' (like a ledger kept busy)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups_failing = 1

    def triage(self, item: Shout) -> Triage:
        if item.text == "locked" and self.lookups_failing:
            self.lookups_failing -= 1
            raise TimeoutError("database is locked")
        return super().triage(item)


def test_a_record_the_loop_failed_on_is_rewound_and_handled(kafka_broker: EmbeddedBroker) -> None:
    prefix = f"g{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=kafka_broker.bootstrap, kafka_config=TEST_KAFKA_CONFIG)
    topics = ("shout_in", "shout_out", DeadLetter.TOPIC)
    ensure_topics(AdminClient(with_logger(common_config(settings))), topics, 1, prefix=prefix)
    with KafkaPublisher(settings, topic_prefix=prefix) as publisher:
        publisher.publish_many([Shout(text=t) for t in ("before", "locked", "after")])
    options = WorkerOptions(topic_prefix=prefix, retry=RetryPolicy(backoff_s=0.05))
    with GroupWorker(
        LockedOnceHandler(), "shout_in", settings, options, group_id=f"{prefix}g",
        topics_to_create=topics,
    ) as worker:  # fmt: skip
        out = read_topic(
            "shout_out", settings, models={"shout_out": Shouted}, count=3, prefix=prefix
        )
        snap = worker.stats.snapshot()
    assert [r.message.text for r in out if isinstance(r.message, Shouted)] == [
        "BEFORE",
        "LOCKED",
        "AFTER",
    ]
    assert snap["transient_errors"] == 1 and snap["processed"] == 3
