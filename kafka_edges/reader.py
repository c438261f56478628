"""Read a topic without joining a consumer group (for dashboards, tests and tools).

The reader assigns every partition itself, so it starts at once (no group join) and commits
nothing: it never takes messages away from the workers. After a broker reset (a restarted
memory-only broker gives the topic a new id, seen by a BrokerResetWatch) it reads the topic's
new incarnation from its earliest offset: its old positions mean nothing there, and a reader
that kept them would skip the first records of the new log.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from foundation.settings import Settings
from kafka_edges.admin import base_name, qualified
from kafka_edges.codec import MessageDecodeError, WireModel, decode, headers_dict
from kafka_edges.config import consumer_config, topic_prefix, with_logger
from kafka_edges.recovery import BrokerResetWatch


@dataclass(frozen=True)
class Record:
    """One message as read: where it was, its key and headers, the raw value and the decoded model."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes | None
    timestamp_ms: int
    message: WireModel | None
    error: MessageDecodeError | None = None


class TopicReader:
    """Iterate over one topic from the beginning (or the end) of every partition; values are
    decoded with the model `models` gives for the topic's (unprefixed) name, if any.
    `read_to_end` reads what the topic holds, then stops."""

    def __init__(
        self,
        topic: str,
        settings: Settings,
        *,
        models: Mapping[str, type[WireModel]] | None = None,
        bootstrap: str | None = None,
        prefix: str | None = None,
        from_beginning: bool = True,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.models = dict(models or {})
        self.prefix = topic_prefix(self.settings, prefix)
        self.base_topic = base_name(topic, self.prefix)
        self.topic = qualified(self.base_topic, self.prefix)
        conf = consumer_config(
            self.settings,
            f"aimesh-reader-{uuid.uuid4().hex[:8]}",  # required by librdkafka; never joined
            bootstrap=bootstrap,
            client="reader",
            overrides={"enable.partition.eof": True, **(overrides or {})},
        )
        self._consumer = Consumer(with_logger(conf))
        self.partitions: list[int] = []
        self._at_end: set[int] = set()
        self.resets = 0
        self._reset = threading.Event()
        self._assign(OFFSET_BEGINNING if from_beginning else OFFSET_END)
        self._watch = BrokerResetWatch(
            settings, self.topic, self._reset.set, bootstrap=bootstrap, settle_s=0.0
        ).start()

    def _assign(self, start: int) -> None:
        """Read every partition of the topic from `start` (it replaces any assignment)."""
        metadata = self._consumer.list_topics(self.topic, timeout=10)
        partitions = metadata.topics[self.topic].partitions if self.topic in metadata.topics else {}
        self.partitions = sorted(partitions)
        self._at_end.clear()
        self._consumer.assign([TopicPartition(self.topic, p, start) for p in self.partitions])

    @property
    def exists(self) -> bool:
        """Whether the topic was on the broker when the reader started."""
        return bool(self.partitions)

    def poll(self, timeout_s: float = 0.2) -> Record | None:
        """The next record, or None; after a broker reset, from the new log's start."""
        if self._reset.is_set():
            self._reset.clear()
            self.resets += 1
            self._assign(OFFSET_BEGINNING)
        msg = self._consumer.poll(timeout_s)
        if msg is None:
            return None
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(msg.partition() or 0)
                return None
            if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise RuntimeError(f"reading {self.topic}: {error}")
        self._at_end.discard(msg.partition() or 0)
        model = self.models.get(self.base_topic)
        decoded: WireModel | None = None
        problem: MessageDecodeError | None = None
        if model is not None:
            try:
                decoded = decode(model, msg.value())
            except MessageDecodeError as exc:
                problem = exc
        key = msg.key()
        return Record(
            topic=self.topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=key.decode("utf-8", errors="replace") if key is not None else None,
            headers=headers_dict(msg.headers()),
            value=msg.value(),
            timestamp_ms=msg.timestamp()[1],
            message=decoded,
            error=problem,
        )

    def read(
        self,
        count: int | None = None,
        *,
        timeout_s: float = 10.0,
        until: Callable[[Record], bool] | None = None,
        idle_s: float | None = None,
    ) -> list[Record]:
        """Records until `count` were read, `until(record)` is true, `timeout_s` passed, or
        nothing arrived for `idle_s`."""
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            record = self.poll(0.1)
            if record is None:
                if idle_s is not None and time.monotonic() - last >= idle_s:
                    break
                continue
            last = time.monotonic()
            records.append(record)
            if count is not None and len(records) >= count:
                break
            if until is not None and until(record):
                break
        return records

    def read_to_end(self, *, timeout_s: float = 30.0) -> list[Record]:
        """The records up to the end of every partition, then stop (like `kcat -e`)."""
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while not self._at_end.issuperset(self.partitions) and time.monotonic() < deadline:
            record = self.poll(0.1)
            if record is not None:
                records.append(record)
        return records

    def __iter__(self) -> Iterator[Record]:
        while True:
            record = self.poll(0.5)
            if record is not None:
                yield record

    def close(self) -> None:
        self._watch.stop()
        self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_topic(
    topic: str,
    settings: Settings,
    *,
    models: Mapping[str, type[WireModel]] | None = None,
    count: int | None = None,
    timeout_s: float = 10.0,
    prefix: str | None = None,
    until: Callable[[Record], bool] | None = None,
    idle_s: float | None = None,
) -> list[Record]:
    """Read a topic from the beginning: `count` records, or until `until`/`idle_s`/`timeout_s`."""
    with TopicReader(topic, settings, prefix=prefix, models=models) as reader:
        return reader.read(count, timeout_s=timeout_s, until=until, idle_s=idle_s)
