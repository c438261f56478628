"""GroupWorker with a handler that is not the mesh's: the loop knows records, not the graph."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
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


TOPICS = ("shout_in", "shout_out", DeadLetter.TOPIC)


@dataclass(frozen=True)
class Shouting:
    """A fresh topic prefix on the test broker with `shout_in` holding the given texts."""

    prefix: str
    settings: Settings

    def worker(self, handler: ShoutHandler, options: WorkerOptions) -> GroupWorker[Shout]:
        return GroupWorker(
            handler, "shout_in", self.settings, options, group_id=f"{self.prefix}g",
            topics_to_create=TOPICS,
        )  # fmt: skip

    def shouted(self, count: int) -> list[str]:
        out = read_topic(
            "shout_out", self.settings, models={"shout_out": Shouted}, count=count,
            prefix=self.prefix,
        )  # fmt: skip
        return [r.message.text for r in out if isinstance(r.message, Shouted)]


def shouting(broker: EmbeddedBroker, *texts: str, raw: Sequence[WireRecord] = ()) -> Shouting:
    prefix = f"g{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_config=TEST_KAFKA_CONFIG)
    ensure_topics(AdminClient(with_logger(common_config(settings))), TOPICS, 1, prefix=prefix)
    with KafkaPublisher(settings, topic_prefix=prefix) as publisher:
        publisher.publish_many([Shout(text=t) for t in texts])
        publisher.publish_records([(f"{prefix}shout_in", record) for record in raw])
    return Shouting(prefix, settings)


def test_a_generic_handler_runs_in_the_group_loop(kafka_broker: EmbeddedBroker) -> None:
    run = shouting(kafka_broker, "a", "flaky", "bad", "a", "b", raw=[WireRecord(b"k", b"{", [])])
    handler = ShoutHandler()
    options = WorkerOptions(topic_prefix=run.prefix, retry=RetryPolicy(max_tries=2, backoff_s=0.05))
    with run.worker(handler, options) as worker:
        out = run.shouted(3)
        dead = read_topic(
            DeadLetter.TOPIC,
            run.settings,
            models={DeadLetter.TOPIC: DeadLetter},
            count=2,
            prefix=run.prefix,
        )
        snap = worker.stats.snapshot()
    assert out == ["A", "FLAKY", "B"]
    reasons = sorted(r.message.reason for r in dead if isinstance(r.message, DeadLetter))
    assert reasons == ["malformed_json", "node_error"]
    assert snap["processed"] == 3 and snap["duplicates"] == 1 and snap["dead_lettered"] == 2
    assert snap["transient_errors"] == 2 and snap["node_errors"] == 2


def test_a_redelivery_inside_one_batch_is_a_duplicate(kafka_broker: EmbeddedBroker) -> None:
    """The handler's triage only knows delivered batches: the batch itself knows the rest."""
    run = shouting(kafka_broker, "x", "x", "y")
    with run.worker(ShoutHandler(), WorkerOptions(topic_prefix=run.prefix, max_batch_s=30.0)) as w:
        out = run.shouted(2)
        snap = w.stats.snapshot()
    assert out == ["X", "Y"]
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
    run = shouting(kafka_broker, "before", "locked", "after")
    options = WorkerOptions(topic_prefix=run.prefix, retry=RetryPolicy(backoff_s=0.05))
    with run.worker(LockedOnceHandler(), options) as worker:
        out = run.shouted(3)
        snap = worker.stats.snapshot()
    assert out == ["BEFORE", "LOCKED", "AFTER"]
    assert snap["transient_errors"] == 1 and snap["processed"] == 3
