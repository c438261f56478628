"""What a broker holds: each topic's partitions and messages, and each consumer group's lag.

The end of a partition is the offset after its last record, found by reading the last batch:
tansu reports a high watermark one past the *first* record of the last batch, so watermarks
alone undercount whatever a producer batched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from foundation.settings import Settings
from kafka_edges.admin import base_name
from kafka_edges.config import common_config, consumer_config, topic_prefix, with_logger

Partition = tuple[str, int]
"""(topic, partition) as named on the broker."""


@dataclass(frozen=True)
class GroupLag:
    """How far one consumer group is behind on a topic: committed offsets vs. the ends."""

    group: str
    lag: int


@dataclass(frozen=True)
class TopicStats:
    """One topic: its mesh name, partitions, messages held, and the lag of each group reading it."""

    name: str
    partitions: int
    messages: int
    groups: list[GroupLag] = field(default_factory=list)


def partition_bounds(
    consumer: Consumer, partitions: Iterable[Partition], *, timeout_s: float = 10.0
) -> dict[Partition, tuple[int, int]]:
    """(first offset, offset after the last record) of each partition."""
    bounds: dict[Partition, tuple[int, int]] = {}
    for topic, partition in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
        bounds[(topic, partition)] = (low, high)
    last_batches = [
        TopicPartition(t, p, high - 1) for (t, p), (low, high) in bounds.items() if high > low
    ]
    if not last_batches:
        return bounds
    consumer.assign(last_batches)
    open_partitions = {(tp.topic, tp.partition) for tp in last_batches}
    deadline = time.monotonic() + timeout_s
    while open_partitions and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        key = (msg.topic() or "", msg.partition() or 0)
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                open_partitions.discard(key)
            continue
        low, high = bounds[key]
        bounds[key] = (low, max(high, (msg.offset() or 0) + 1))
    consumer.unassign()
    return bounds


def committed_offsets(
    admin: AdminClient, *, timeout_s: float = 10.0
) -> dict[str, dict[Partition, int]]:
    """Every consumer group's committed offsets, by group."""
    listing = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
    committed: dict[str, dict[Partition, int]] = {}
    for group in sorted(g.group_id for g in listing.valid):
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
        )
        for future in futures.values():
            offsets = future.result(timeout=timeout_s).topic_partitions or []
            committed[group] = {
                (tp.topic, tp.partition): tp.offset for tp in offsets if tp.offset >= 0
            }
    return committed


def topic_stats(
    settings: Settings, *, prefix: str | None = None, timeout_s: float = 10.0
) -> list[TopicStats]:
    """The mesh's topics on the configured broker (those with the topic prefix, by mesh name)."""
    chosen = topic_prefix(settings, prefix)
    admin = AdminClient(with_logger(common_config(settings)))
    overrides = {"enable.partition.eof": True}
    consumer = Consumer(
        with_logger(
            consumer_config(
                settings,
                f"aimesh-stats-{uuid.uuid4().hex[:8]}",
                client="stats",
                overrides=overrides,
            )
        )
    )
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        names = sorted(
            n for n in metadata.topics if n.startswith(chosen) and not n.startswith("__")
        )
        partitions = [(n, p) for n in names for p in sorted(metadata.topics[n].partitions)]
        bounds = partition_bounds(consumer, partitions, timeout_s=timeout_s)
        committed = committed_offsets(admin, timeout_s=timeout_s)
    finally:
        consumer.close()
    stats = []
    for name in names:
        own = [(t, p) for (t, p) in partitions if t == name]
        groups = [
            GroupLag(group, sum(bounds[tp][1] - offsets.get(tp, bounds[tp][0]) for tp in own))
            for group, offsets in committed.items()
            if any(tp in offsets for tp in own)
        ]
        messages = sum(bounds[tp][1] - bounds[tp][0] for tp in own)
        stats.append(TopicStats(base_name(name, chosen), len(own), messages, groups))
    return stats
