"""KafkaPublisher: puts wire messages on their topics, confirmed or raised."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from kafka_edges.admin import qualified
from kafka_edges.codec import WireModel, encode
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


class PublishError(InfrastructureError):
    """Messages could not be confirmed by the broker after the bounded retries."""


@dataclass
class _Outgoing:
    topic: str
    message: WireModel
    error: KafkaError | None = None
    delivered: bool = False
    done: bool = False
    partition: int | None = None
    offset: int | None = None

    def on_delivery(self, error: KafkaError | None, msg: Message) -> None:
        self.done = True
        self.error = error
        self.delivered = error is None
        if error is None:
            self.partition = msg.partition()
            self.offset = msg.offset()


@dataclass
class Delivery:
    """Where a confirmed message landed."""

    topic: str
    partition: int | None
    offset: int | None
    message: WireModel = field(repr=False)


class KafkaPublisher:
    """Publishes wire messages to their topics, confirmed or raised.

    `publish` returns only once the broker has acknowledged the messages (acks=all,
    idempotent producer). A message that is not acknowledged within `delivery_timeout_s` is
    re-sent, up to `max_tries` times in all; then PublishError is raised, so a step is never
    lost silently. Thread-safe: one publisher may serve several threads.
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
        self._conf = with_logger(
            producer_config(
                self.settings,
                bootstrap=bootstrap,
                client=client,
                overrides={
                    "message.timeout.ms": int(delivery_timeout_s * 1000),
                    **(producer_overrides or {}),
                },
            )
        )
        self.bootstrap = str(self._conf["bootstrap.servers"])
        self._lock = threading.Lock()
        self._producer: Producer | None = Producer(self._conf)

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
        headers = {**self.extra_headers, **(extra_headers or {})}
        pending = [_Outgoing(self.topic_of(m), m) for m in messages]
        confirmed: list[_Outgoing] = []
        last_error = "no acknowledgement"
        for attempt in range(1, self.max_tries + 1):
            with self._lock:
                producer = self._ensure_producer()
                for out in pending:
                    out.error, out.done, out.delivered = None, False, False
                    self._produce(producer, out, headers)
                producer.flush(self.delivery_timeout_s + 2.0)
                if any(not out.done for out in pending):
                    # not even a failure report in time: drop them locally before re-sending
                    producer.purge(in_queue=True, in_flight=True, blocking=True)
                    producer.poll(0)
            failed = [out for out in pending if not out.delivered]
            confirmed += [out for out in pending if out.delivered]
            if not failed:
                break
            last_error = _describe(failed)
            if any(out.error is not None and out.error.fatal() for out in failed):
                self._reset_producer()
            permanent = any(
                out.error is not None and out.error.code() in _PERMANENT for out in failed
            )
            if permanent or attempt >= self.max_tries:
                topics = ", ".join(sorted({out.topic for out in failed}))
                raise PublishError(
                    f"Kafka at {self.bootstrap} did not confirm {len(failed)} message(s) to {topics} "
                    f"after {attempt} tries: {last_error}"
                )
            log.warning(
                "retrying %d unconfirmed message(s) (%s), try %d/%d",
                len(failed),
                last_error,
                attempt + 1,
                self.max_tries,
            )
            time.sleep(self.retry_backoff_s * attempt)
            pending = failed
        order = {id(m): i for i, m in enumerate(messages)}
        confirmed.sort(key=lambda out: order[id(out.message)])
        return [Delivery(out.topic, out.partition, out.offset, out.message) for out in confirmed]

    def _produce(self, producer: Producer, out: _Outgoing, headers: Mapping[str, str]) -> None:
        record = encode(out.message, dict(headers) if headers else None)
        for _ in range(100):
            try:
                producer.produce(
                    out.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=out.on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
            except KafkaException as exc:
                out.done, out.error = True, exc.args[0] if exc.args else None
                return
        out.done = True

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._conf)
        return self._producer

    def _reset_producer(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
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


def _describe(failed: Sequence[_Outgoing]) -> str:
    errors = {
        out.error.str() if out.error is not None else "no acknowledgement in time" for out in failed
    }
    return "; ".join(sorted(errors))
