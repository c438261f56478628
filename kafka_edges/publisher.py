"""KafkaPublisher: puts wire messages on their topics, confirmed or raised."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, Message, Producer

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from kafka_edges.admin import qualified
from kafka_edges.codec import WireModel, WireRecord, encode
from kafka_edges.config import producer_config, topic_prefix, with_logger
from kafka_edges.dead_letters import DeadLetter

log = logging.getLogger(__name__)

# errors a retry cannot fix: raise at once instead of waiting out the retries
_PERMANENT = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.INVALID_RECORD,
    KafkaError._INVALID_ARG,
}

# an idempotent producer the broker no longer knows (a memory-only broker restarted): only a new
# producer (a new producer id, sequence numbers from 0) gets its messages accepted again
_FENCED = {
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError._FATAL,
    KafkaError._MSG_TIMED_OUT,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}

RECORD_OVERHEAD_BYTES = 64 * 1024
"""Room above `kafka_max_message_bytes` for librdkafka's own batch framing."""


class PublishError(InfrastructureError):
    """Messages could not be confirmed by the broker after the bounded retries."""

    permanent: bool = False
    """True when retrying cannot help (the message itself is refused)."""


class MessageTooLargeError(PublishError):
    """A record is larger than `kafka_max_message_bytes`: refused before it is sent, never retried."""

    permanent = True

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"a {size:,}-byte record for {topic} exceeds the {limit:,}-byte limit "
            "(AIMESH_KAFKA_MAX_MESSAGE_BYTES); it was not sent"
        )
        self.topic = topic
        self.size = size
        self.limit = limit


def record_size(record: WireRecord) -> int:
    """Key + value + header names and values, in bytes (what the limit is measured on)."""
    headers = sum(len(k) + len(v or b"") for k, v in record.headers)
    return len(record.key or b"") + len(record.value or b"") + headers


@dataclass
class _Outgoing:
    topic: str
    record: WireRecord
    message: WireModel | None = None
    error: KafkaError | None = None
    delivered: bool = False
    done: bool = False
    partition: int | None = None
    offset: int | None = None

    def on_delivery(self, error: KafkaError | None, msg: Message) -> None:
        # never raise here: librdkafka calls it from flush(), an exception would surface there
        self.done = True
        self.error = error
        self.delivered = error is None
        if error is None:
            with contextlib.suppress(Exception):
                self.partition = msg.partition()
                self.offset = msg.offset()


@dataclass(frozen=True)
class Sending:
    """Messages handed to the producer by `KafkaPublisher.send`, not yet confirmed."""

    outgoing: list[_Outgoing]


@dataclass
class Delivery:
    """Where a confirmed message landed."""

    topic: str
    partition: int | None
    offset: int | None
    message: WireModel | None = field(repr=False)
    record: WireRecord = field(repr=False)
    """The bytes that were published (key, value, headers), encoded once."""


class KafkaPublisher:
    """Publishes wire messages to their topics, confirmed or raised.

    `publish` returns only once the broker has acknowledged the messages (acks=all,
    idempotent producer). A message that is not acknowledged within `delivery_timeout_s` is
    re-sent, up to `max_tries` times in all; then PublishError is raised, so a step is never
    lost silently. A record above `settings.kafka_max_message_bytes` is refused before anything
    of the batch is sent (MessageTooLargeError). After a failed try that suggests the broker no
    longer knows this producer (a restarted memory-only broker: UNKNOWN_PRODUCER_ID,
    OUT_OF_ORDER_SEQUENCE_NUMBER, a fatal error, or no acknowledgement in time) the producer is
    recreated before the retry. A producer that lost every broker connection since its last
    publish (all brokers down: a restart, perhaps to a broker that forgot it) is replaced BEFORE
    the next publish: otherwise that publish waits out `delivery_timeout_s` first (measured:
    10 s per hop after a tansu restart, 44 s to the first report over four hops). Thread-safe:
    one publisher may serve several threads.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bootstrap: str | None = None,
        topic_prefix: str | None = None,
        client: str = "edges",
        delivery_timeout_s: float = 10.0,
        max_tries: int = 3,
        retry_backoff_s: float = 0.5,
        extra_headers: Mapping[str, str] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.topic_prefix = _prefix(self.settings, topic_prefix)
        self.delivery_timeout_s = delivery_timeout_s
        self.max_tries = max(1, max_tries)
        self.retry_backoff_s = retry_backoff_s
        self.extra_headers = dict(extra_headers or {})
        self.max_message_bytes = settings.kafka_max_message_bytes
        self._conf = with_logger(
            producer_config(
                self.settings,
                bootstrap=bootstrap,
                client=client,
                overrides={
                    "message.timeout.ms": int(delivery_timeout_s * 1000),
                    # the limit is ours (checked before producing, with a readable error)
                    "message.max.bytes": self.max_message_bytes + RECORD_OVERHEAD_BYTES,
                    **(producer_overrides or {}),
                },
            )
        )
        self.bootstrap = str(self._conf["bootstrap.servers"])
        self._conf["error_cb"] = self._on_client_error
        self._all_brokers_lost = threading.Event()
        self._lock = threading.Lock()
        self._producer: Producer | None = Producer(self._conf)
        self.producer_resets = 0
        """How many times a failed try made this publisher replace its producer."""

    def send_dead_letter(
        self, dead: DeadLetter, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish a dead letter (confirmed, like everything else)."""
        self.publish(dead, extra_headers=extra_headers)

    # ------------------------------------------------------------------ publishing

    def topic_of(self, message: WireModel) -> str:
        """The broker topic for a message (its model's topic, with this sink's prefix)."""
        return qualified(message.TOPIC, self.topic_prefix)

    def publish(
        self, message: WireModel, extra_headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """Publish one message to its topic and wait for the broker's acknowledgement."""
        return self.publish_many([message], extra_headers=extra_headers)[0]

    def publish_many(
        self, messages: Sequence[WireModel], extra_headers: Mapping[str, str] | None = None
    ) -> list[Delivery]:
        """Publish messages together, wait for all acknowledgements; retry the unconfirmed ones."""
        return self.confirm(self.send(messages, extra_headers))

    def publish_records(self, records: Sequence[tuple[str, WireRecord]]) -> list[Delivery]:
        """Publish already-encoded records to the given broker topics (e.g. a replay), confirmed."""
        return self.confirm(self._send([_Outgoing(topic, record) for topic, record in records]))

    def send(
        self, messages: Sequence[WireModel], extra_headers: Mapping[str, str] | None = None
    ) -> Sending:
        """Encode and hand messages to the producer without waiting (the broker's
        acknowledgements arrive in the background); `confirm` waits for them. Raises
        MessageTooLargeError, before anything is sent, if one is above the size limit."""
        headers = {**self.extra_headers, **(extra_headers or {})}
        return self._send(
            [
                _Outgoing(self.topic_of(m), encode(m, dict(headers) if headers else None), m)
                for m in messages
            ]
        )

    def confirm(self, *sent: Sending) -> list[Delivery]:
        """Wait until everything `send` handed over is acknowledged, re-sending what is not;
        the deliveries in the order sent, or PublishError."""
        return self._confirm_all([out for sending in sent for out in sending.outgoing])

    def _send(self, outgoing: list[_Outgoing]) -> Sending:
        for out in outgoing:
            size = record_size(out.record)
            if size > self.max_message_bytes:
                raise MessageTooLargeError(out.topic, size, self.max_message_bytes)
        self._produce_all(outgoing)
        return Sending(outgoing)

    def _confirm_all(self, outgoing: list[_Outgoing]) -> list[Delivery]:
        last_error = "no acknowledgement"
        for attempt in range(1, self.max_tries + 1):
            # what failed before (an earlier try, or an earlier call) goes out again
            self._produce_all([out for out in outgoing if out.done and not out.delivered])
            self._await([out for out in outgoing if not out.delivered])
            failed = [out for out in outgoing if not out.delivered]
            if not failed:
                break
            for out in failed:  # re-sent by the next try (or the next call)
                out.done = True
            last_error = _describe(failed)
            permanent = any(
                isinstance(out.error, KafkaError) and out.error.code() in _PERMANENT
                for out in failed
            )
            if permanent or attempt >= self.max_tries:
                topics = ", ".join(sorted({out.topic for out in failed}))
                error = PublishError(
                    f"Kafka at {self.bootstrap} did not confirm {len(failed)} message(s) to {topics} "
                    f"after {attempt} tries: {last_error}"
                )
                error.permanent = permanent
                if not permanent:
                    self._reset_producer()
                raise error
            # whatever failed, the next try uses a new producer: one fenced by a restarted
            # broker (unknown producer id, sequence or epoch) never recovers by itself
            self._reset_producer()
            if any(_fenced(out.error) for out in failed):
                last_error += "; producer recreated"
            log.info(  # the caller reports a failure that outlasts the tries, once
                "retrying %d unconfirmed message(s) (%s), try %d/%d",
                len(failed),
                last_error,
                attempt + 1,
                self.max_tries,
            )
            time.sleep(self.retry_backoff_s * attempt)
        return [
            Delivery(out.topic, out.partition, out.offset, out.message, out.record)
            for out in outgoing
        ]

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (served by poll/flush in the publishing thread)."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._all_brokers_lost.set()

    def _produce_all(self, pending: Sequence[_Outgoing]) -> None:
        with self._lock:
            producer = self._ensure_producer()
            producer.poll(0)  # serve what happened since the last publish (e.g. brokers lost)
            if self._all_brokers_lost.is_set():
                self._all_brokers_lost.clear()
                self._discard_producer(producer)
                self._producer = None
                self.producer_resets += 1
                producer = self._ensure_producer()
            for out in pending:
                out.error, out.done, out.delivered = None, False, False
                self._produce(producer, out)

    def _await(self, pending: Sequence[_Outgoing]) -> None:
        """Wait for the delivery reports of `pending` (a report for each, or a timeout)."""
        with self._lock:
            producer = self._producer
            if producer is None:  # reset since: what it held was purged
                for out in pending:
                    if not out.done:
                        out.done = True
                return
            try:
                producer.flush(self.delivery_timeout_s + 2.0)
            except Exception as exc:
                # a fenced or fatally failed producer surfaces here, as a KafkaException or as
                # a SystemError ("on_delivery returned a result with an exception set")
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                log.debug("flush failed: %s: %s", type(exc).__name__, exc)
                for out in pending:
                    if not out.delivered:
                        out.done, out.error = True, error
            if any(not out.done for out in pending):
                # not even a failure report in time: drop them locally before re-sending
                with contextlib.suppress(Exception):
                    producer.purge(in_queue=True, in_flight=True, blocking=True)
                    producer.poll(0)

    def _produce(self, producer: Producer, out: _Outgoing) -> None:
        for _ in range(100):
            try:
                producer.produce(
                    out.topic,
                    value=out.record.value,
                    key=out.record.key,
                    headers=out.record.headers,
                    on_delivery=out.on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
            except Exception as exc:  # KafkaException, or a SystemError of a broken producer
                out.done = True
                out.error = (
                    exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                )
                return
        out.done = True

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._conf)
        return self._producer

    def _reset_producer(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            self.producer_resets += 1
        if producer is not None:
            self._discard_producer(producer)

    @staticmethod
    def _discard_producer(producer: Producer) -> None:
        with contextlib.suppress(Exception):  # a broken producer may raise anything here
            producer.purge()
            producer.flush(0)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for anything still queued; returns the number of messages left."""
        with self._lock:
            if self._producer is None:
                return 0
            return self._producer.flush(self.delivery_timeout_s if timeout_s is None else timeout_s)

    def close(self) -> None:
        """Flush and release the producer (idempotent)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self.delivery_timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _prefix(settings: Settings, explicit: str | None) -> str:
    return topic_prefix(settings, explicit)


def _fenced(error: KafkaError | None) -> bool:
    """The producer may be unknown to the broker (or broken): a new one is needed."""
    if error is None:
        return True  # no report at all within the timeout
    if not isinstance(error, KafkaError):
        return False
    return error.fatal() or error.code() in _FENCED


def _describe(failed: Sequence[_Outgoing]) -> str:
    errors = {
        out.error.str()
        if isinstance(out.error, KafkaError)
        else str(out.error or "no acknowledgement in time")
        for out in failed
    }
    return "; ".join(sorted(errors))
