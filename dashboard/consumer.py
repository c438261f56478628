"""The dashboard's Kafka reader: a background thread feeding an Aggregator.

Every dashboard must see every event, so it does not share a consumer group: it assigns itself
all partitions of `ai_telemetry` and `ai_reports` by hand (no group join, so no join delay on
tansu) and never commits. Topics or partitions that appear later are picked up by a periodic
metadata refresh and read from their beginning; so is a topic's new incarnation after a broker
reset (a BrokerResetWatch per topic sees its id change), whose log the old positions would
skip into. What is read twice is counted once (the Aggregator keys every event).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from dashboard.aggregates import Aggregator
from foundation.settings import Settings
from graph.topics import AI_REPORTS, AI_TELEMETRY
from kafka_edges.admin import base_name, qualified
from kafka_edges.config import consumer_config, with_logger
from kafka_edges.recovery import BrokerResetWatch

log = logging.getLogger(__name__)

StartFrom = Literal["earliest", "latest"]
TOPICS: tuple[str, ...] = (AI_TELEMETRY, AI_REPORTS)

REFRESH_WAITING_S = 1.0
"""Metadata refresh period while a topic is still missing."""
REFRESH_S = 15.0
"""Metadata refresh period once every topic is assigned (new partitions, broker health)."""
POLL_S = 0.2
BATCH = 500


def dashboard_consumer_config(
    bootstrap: str, kafka_config: Mapping[str, Any] | None = None, *, client: str = "dashboard"
) -> dict[str, Any]:
    """librdkafka settings for a dashboard reader: the mesh's consumer defaults, a private
    group id (never joined, never committed) and the `kafka_config` passthrough (TLS/SASL)."""
    settings = _settings(bootstrap, kafka_config)
    group = f"{settings.kafka_group_prefix}-dashboard-{uuid.uuid4().hex[:12]}"
    overrides = {"enable.auto.commit": False, "enable.partition.eof": False}
    return with_logger(
        consumer_config(settings, group, bootstrap=bootstrap, client=client, overrides=overrides)
    )


def _settings(bootstrap: str, kafka_config: Mapping[str, Any] | None) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, kafka_config=dict(kafka_config or {}))


class TelemetryReader(threading.Thread):
    """Reads the telemetry and report topics into `aggregator` until `stop()`."""

    def __init__(
        self,
        bootstrap: str,
        aggregator: Aggregator,
        *,
        kafka_config: Mapping[str, Any] | None = None,
        topic_prefix: str = "",
        start_from: StartFrom = "earliest",
        topics: Iterable[str] = TOPICS,
    ) -> None:
        super().__init__(name="aimesh-dashboard-reader", daemon=True)
        self.bootstrap = bootstrap
        self.aggregator = aggregator
        self.kafka_config = dict(kafka_config or {})
        self.topic_prefix = topic_prefix
        self.start_from: StartFrom = start_from
        self.topics = tuple(topics)
        self._stop_event = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._first_assignment = True
        self._healthy = False
        self._next_refresh = 0.0
        self._reset_topics: set[str] = set()  # topics whose new incarnation is to be read
        self._reset_lock = threading.Lock()
        self.resets = 0

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish and wait up to `timeout_s` for it."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout_s)

    def run(self) -> None:
        try:
            consumer = Consumer(dashboard_consumer_config(self.bootstrap, self.kafka_config))
        except (KafkaException, ValueError, TypeError) as exc:
            self.aggregator.set_source("error", f"cannot create a Kafka consumer: {exc}")
            log.error("dashboard: cannot create a Kafka consumer: %s", exc)
            return
        settings = _settings(self.bootstrap, self.kafka_config)
        watches = [
            BrokerResetWatch(
                settings, topic, partial(self._reset_seen, topic), bootstrap=self.bootstrap,
                settle_s=0.0,
            ).start()
            for topic in (qualified(name, self.topic_prefix) for name in self.topics)
        ]  # fmt: skip
        try:
            self._loop(consumer)
        except Exception as exc:  # keep the page informed instead of dying silently
            log.exception("dashboard reader stopped")
            self.aggregator.set_source("error", f"reader stopped: {exc}")
        finally:
            for watch in watches:
                watch.stop()
            consumer.close()

    def _reset_seen(self, topic: str) -> None:
        """A watch's callback (its own thread): `topic` has a new incarnation."""
        with self._reset_lock:
            self._reset_topics.add(topic)

    def _forget_reset_topics(self, consumer: Consumer) -> None:
        """Unassign the partitions of topics reset since the last round; the next refresh
        assigns the new incarnation's partitions from their beginning."""
        with self._reset_lock:
            topics, self._reset_topics = self._reset_topics, set()
        old = [TopicPartition(t, p) for t, p in self._assigned if t in topics]
        if old:
            consumer.incremental_unassign(old)
            self._assigned.difference_update((tp.topic, tp.partition) for tp in old)
        if topics:
            self.resets += len(topics)
            self._next_refresh = 0.0

    def _loop(self, consumer: Consumer) -> None:
        while not self._stop_event.is_set():
            self._forget_reset_topics(consumer)
            now = time.monotonic()
            if now >= self._next_refresh:
                complete = self._refresh(consumer)
                self._next_refresh = now + (REFRESH_S if complete else REFRESH_WAITING_S)
            if not self._assigned:
                self._stop_event.wait(POLL_S)
                continue
            for message in consumer.consume(num_messages=BATCH, timeout=POLL_S):
                error = message.error()
                if error is not None:
                    self._on_error(error)
                    continue
                if not self._healthy:
                    self._next_refresh = 0.0  # the broker answers again: update the status now
                    self._healthy = True
                topic = base_name(message.topic() or "", self.topic_prefix)
                ts_type, ts_ms = message.timestamp()
                kafka_ts = ts_ms / 1000.0 if ts_type and ts_ms and ts_ms > 0 else None
                self.aggregator.ingest(topic, message.value(), kafka_ts=kafka_ts)

    def _refresh(self, consumer: Consumer) -> bool:
        """Assign partitions not yet assigned; True when every topic was found."""
        try:
            metadata = consumer.list_topics(timeout=2.0)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            self._healthy = False
            self.aggregator.set_source(
                "unreachable", f"no answer from Kafka at {self.bootstrap} ({error})"
            )
            return False
        new: list[TopicPartition] = []
        missing: list[str] = []
        for name in self.topics:
            topic = qualified(name, self.topic_prefix)
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                missing.append(topic)
                continue
            for partition in sorted(info.partitions):
                if (topic, partition) in self._assigned:
                    continue
                # topics that exist at start honour start_from; anything newer is read whole
                offset = (
                    OFFSET_END
                    if self._first_assignment and self.start_from == "latest"
                    else OFFSET_BEGINNING
                )
                new.append(TopicPartition(topic, partition, offset))
        self._first_assignment = False
        if new:
            consumer.incremental_assign(new)
            self._assigned.update((tp.topic, tp.partition) for tp in new)
        partitions = len(self._assigned)
        self._healthy = True
        if missing:
            self.aggregator.set_source(
                "waiting",
                f"waiting for topic(s) {', '.join(missing)}",
                bootstrap=self.bootstrap,
                partitions=partitions,
            )
        else:
            self.aggregator.set_source(
                "connected", "", bootstrap=self.bootstrap, partitions=partitions
            )
        return not missing

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._healthy = False
            self._next_refresh = min(self._next_refresh, time.monotonic() + REFRESH_WAITING_S)
            self.aggregator.set_source("unreachable", f"Kafka at {self.bootstrap}: {error.str()}")
        else:
            log.warning("dashboard: Kafka error: %s", error.str())
            if error.fatal():
                raise KafkaException(error)
