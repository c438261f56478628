"""GroupWorker: a generic Kafka consumer-group loop. It knows records, not what they mean.

Members (threads, each with its own consumer and publisher) poll one topic and hand every record
to a RecordHandler: decode it, decide whether to handle it (or skip it, or recognise a
duplicate), handle it into the messages to publish. Records are taken in batches of what is
already fetched (`WorkerOptions.max_batch`, `max_batch_s`): each record's outputs are sent as soon
as it is handled, the broker's acknowledgements for the whole batch are awaited once, the handler
is told what was delivered (one call per batch), and only then are the batch's offsets committed
(at least once: a crash before the commit redelivers the batch, and the handler's triage
recognises what it already delivered). What happens on failure is the RetryPolicy's and the
DeadLetterPolicy's call; a record above the size limit, undecodable, or failing for its own sake
past the retries is dead-lettered and committed, so no record can stop a member from taking the
next one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Generic, Self, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from foundation.settings import Settings
from kafka_edges.admin import DEFAULT_PARTITIONS, ensure_topics, qualified
from kafka_edges.broker import check_reachable
from kafka_edges.codec import MessageDecodeError, WireModel
from kafka_edges.config import common_config, consumer_config, require_bootstrap, with_logger
from kafka_edges.config import topic_prefix as settings_topic_prefix
from kafka_edges.dead_letters import DeadLetter, dead_letter_for
from kafka_edges.delivery_policy import DeadLetterPolicy, RetryPolicy
from kafka_edges.errors import BrokerError
from kafka_edges.publisher import Delivery, KafkaPublisher, PublishError, Sending
from kafka_edges.record_handler import (
    ConsumedRecord,
    Delivered,
    Identity,
    RecordHandler,
    Triage,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "ConsumedRecord",
    "Delivered",
    "GroupWorker",
    "Identity",
    "RecordHandler",
    "Triage",
    "WorkerError",
    "WorkerOptions",
    "WorkerStats",
]


class WorkerError(RuntimeError):
    """A worker cannot run (bad role, bad options, a member that died)."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a GroupWorker connects, scales and retries (everything has a default)."""

    concurrency: int = 1
    bootstrap: str | None = None
    topic_prefix: str | None = None
    group_id: str | None = None
    poll_timeout_s: float = 0.2
    max_batch: int = 500
    """Records taken together at most: their outputs confirmed by one wait, their offsets
    committed at once, their ledger entries written in one transaction."""
    max_batch_s: float = 0.05
    """A batch takes no more records after this long (a slow handler works one at a time)."""
    create_topics: bool = True
    partitions: int = DEFAULT_PARTITIONS
    connect_timeout_s: float = 5.0
    consumer_overrides: Mapping[str, Any] = field(default_factory=dict)
    publisher_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dead_letters: DeadLetterPolicy = field(default_factory=DeadLetterPolicy)


@dataclass
class WorkerStats:
    """Counters for one worker (all members)."""

    consumed: int = 0
    processed: int = 0
    duplicates: int = 0
    observed: int = 0
    dead_lettered: int = 0
    dead_letters_lost: int = 0
    oversized: int = 0
    node_errors: int = 0
    transient_errors: int = 0
    publish_retries: int = 0
    commit_failures: int = 0
    consumer_restarts: int = 0
    producer_restarts: int = 0
    assignments: dict[int, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + by)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counters = {
                k: v for k, v in vars(self).items() if not k.startswith("_") and k != "assignments"
            }
            return {**counters, "assignments": {k: list(v) for k, v in self.assignments.items()}}


@dataclass
class _Member:
    index: int
    worker_id: str
    consumer: Consumer
    publisher: KafkaPublisher


@dataclass(frozen=True)
class _Sent(Generic[T]):
    """A handled item whose outputs are sent, not yet confirmed."""

    item: T
    record: ConsumedRecord
    sending: Sending


@dataclass
class _Batch(Generic[T]):
    """Records taken together: committed together, after their outputs are confirmed."""

    hold: Callable[[T], None]
    """Leases an item until the batch is complete (`RecordHandler.leases`)."""
    records: list[Message] = field(default_factory=list)
    sent: list[_Sent[T]] = field(default_factory=list)
    dead: list[Delivered[T]] = field(default_factory=list)
    keys: set[Hashable] = field(default_factory=set)


class _Stopping(Exception):
    """The worker was asked to stop while a record was unfinished (it stays uncommitted)."""


_LOG_EVERY_S = 30.0


class GroupWorker(Generic[T]):
    """Consume `topic` (a mesh name; the prefix is added) as `options.concurrency` group members.

    >>> with GroupWorker(handler, "ai_topic", settings, group_id="g") as worker:  # doctest: +SKIP
    ...     ...                                                       # background threads
    """

    def __init__(
        self,
        handler: RecordHandler[T],
        topic: str,
        settings: Settings,
        options: WorkerOptions | None = None,
        *,
        group_id: str,
        topics_to_create: Sequence[str] = (),
        dead_letter_topic: str = DeadLetter.TOPIC,
    ) -> None:
        self.options = options or WorkerOptions()
        if self.options.concurrency < 1:
            raise WorkerError("concurrency must be at least 1")
        self.handler = handler
        self.name = handler.name
        self.settings = settings
        self.concurrency = self.options.concurrency
        self.bootstrap = require_bootstrap(settings, self.options.bootstrap)
        self.topic_prefix = settings_topic_prefix(settings, self.options.topic_prefix)
        self.topic = qualified(topic, self.topic_prefix)
        self.group_id = self.options.group_id or group_id
        self.topics_to_create = tuple(topics_to_create) or (topic, dead_letter_topic)
        self.max_record_bytes = settings.kafka_max_message_bytes
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._joined: set[int] = set()
        self._joined_lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._topics_checked_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Check the broker, create missing topics, start the members (background threads)."""
        if self._threads:
            return self
        check_reachable(
            self.bootstrap, self.settings.kafka_config, timeout_s=self.options.connect_timeout_s
        )
        if self.options.create_topics:
            self._ensure_topics(raise_errors=True)
        self._stop.clear()
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._member_main,
                args=(index,),
                name=f"aimesh-{self.name}-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        log.info(
            "%s worker: %d member(s) in group %s on %s (%s)",
            self.name,
            self.concurrency,
            self.group_id,
            self.topic,
            self.bootstrap,
        )
        return self

    def stop(self) -> None:
        """Ask the members to stop after their current record (non-blocking)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the members to exit; True if all did. Re-raises a member's fatal error."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        alive = any(t.is_alive() for t in self._threads)
        if not alive:
            self._threads = []
        if self._errors:
            error = self._errors[0]
            raise WorkerError(f"{self.name} worker failed: {error}") from error
        return not alive

    def wait_joined(self, timeout_s: float = 30.0) -> bool:
        """Wait until every member has received its first partition assignment."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._joined_lock:
                if len(self._joined) >= self.concurrency:
                    return True
            if self._errors:
                self.join(0)
            time.sleep(0.02)
        return False

    def run(self, *, install_signal_handlers: bool = True) -> WorkerStats:
        """Run in the foreground until SIGTERM/SIGINT (or stop()); returns the stats.

        The first signal stops after the current record (its output published and its offset
        committed); a second one exits at once (the uncommitted record is redelivered).
        """
        self.start()
        restore: list[tuple[int, Any]] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            restore = install_stop_signals(self.stop, self.stopping_message)
        try:
            while not self.join(0.5):
                pass
        finally:
            self.stop()
            restore_signals(restore)
        return self.stats

    def stopping_message(self) -> str:
        return f"{self.name} worker stopping after the current message (again to exit now)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.join(30.0)

    # ------------------------------------------------------------------ members

    def _member_main(self, index: int) -> None:
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{self.name}:{index}"
        member: _Member | None = None
        try:
            member = _Member(
                index,
                worker_id,
                self._new_consumer(index),
                KafkaPublisher(
                    self.settings,
                    bootstrap=self.bootstrap,
                    topic_prefix=self.topic_prefix,
                    client=self.name,
                    extra_headers={"worker": worker_id},
                    **dict(self.options.publisher_options),
                ),
            )
            while not self._stop.is_set():
                msg = member.consumer.poll(self.options.poll_timeout_s)
                if msg is not None:
                    self._run_batch(member, msg)
        except _Stopping:
            return
        except BaseException as exc:
            log.error(
                "%s worker member %d failed: %s: %s", self.name, index, type(exc).__name__, exc
            )
            log.debug("member failure", exc_info=True)
            self._errors.append(exc)
            self._stop.set()
        finally:
            if member is not None:
                _close_consumer(member.consumer)
                member.publisher.close()

    def _run_batch(self, member: _Member, first: Message) -> None:
        """Take records while they are already fetched (up to `max_batch`, for up to
        `max_batch_s`), handling each and sending its outputs at once; then wait for the broker
        to confirm them all, tell the handler, commit the records' offsets. _Stopping if stopped
        (what was handled is still confirmed and committed)."""
        with self.handler.leases() as hold:
            self._fill_and_complete(member, _Batch[T](hold), first)

    def _fill_and_complete(self, member: _Member, batch: _Batch[T], first: Message) -> None:
        deadline = time.monotonic() + self.options.max_batch_s
        msg: Message | None = first
        try:
            while msg is not None:
                error = msg.error()
                if error is not None:
                    self._consumer_error(member, error)
                else:
                    try:
                        self._process(member, batch, msg)
                        batch.records.append(msg)  # its fate is decided: committed with the batch
                    except _Stopping:
                        raise
                    except Exception as exc:  # the loop's own trouble (e.g. the ledger is locked)
                        self._complete(member, batch)
                        self._retry_later(member, [msg], exc)
                        return
                if len(batch.records) >= self.options.max_batch or time.monotonic() >= deadline:
                    break
                msg = member.consumer.poll(0)
        except _Stopping:
            self._complete(member, batch)
            raise
        self._complete(member, batch)

    def _retry_later(self, member: _Member, records: Sequence[Message], exc: Exception) -> None:
        """Keep records whose handling broke outside the handler: rewind to them, back off."""
        self.stats.bump("transient_errors")
        first = {where: min(offsets) for where, offsets in self._offsets(records).items()}
        self._log_once(
            f"loop:{type(exc).__name__}",
            "%s worker: %s kept for a retry: %s: %s",
            self.name,
            _positions(first),
            type(exc).__name__,
            exc,
        )
        for (topic, partition), offset in first.items():
            try:
                member.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as seek_error:  # not ours any more: its new owner gets it
                log.info("%s worker: cannot rewind: %s", self.name, seek_error)
        self._stop.wait(self.options.retry.delay_s(1))

    def _new_consumer(self, index: int) -> Consumer:
        consumer = Consumer(
            with_logger(
                consumer_config(
                    self.settings,
                    self.group_id,
                    bootstrap=self.bootstrap,
                    client=self.name,
                    overrides={
                        # records above the size limit must still arrive (to be dead-lettered)
                        "receive.message.max.bytes": 200_000_000,
                        **dict(self.options.consumer_overrides),
                    },
                )
            )
        )

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            self._record_assignment(index, added=partitions)

        def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
            self._record_assignment(index, removed=partitions)

        consumer.subscribe(
            [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
        )
        return consumer

    def _record_assignment(
        self,
        index: int,
        added: Sequence[TopicPartition] = (),
        removed: Sequence[TopicPartition] = (),
    ) -> None:
        # callbacks carry the change (incremental with cooperative-sticky, whole with eager)
        with self.stats._lock:
            current = set(self.stats.assignments.get(index, []))
            current |= {f"{tp.topic}[{tp.partition}]" for tp in added}
            current -= {f"{tp.topic}[{tp.partition}]" for tp in removed}
            self.stats.assignments[index] = sorted(current)
        if not removed:
            with self._joined_lock:
                self._joined.add(index)

    def _consumer_error(self, member: _Member, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            # e.g. fenced by a restarted broker: a new consumer rejoins the group
            self._log_once("fatal", "%s worker: %s; recreating the consumer", self.name, error)
            _close_consumer(member.consumer)
            member.consumer = self._new_consumer(member.index)
            self.stats.bump("consumer_restarts")
            return
        # a restarted memory-only broker forgot the topics: create them again
        if (
            code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
            and self.options.create_topics
            and time.monotonic() - self._topics_checked_at > 5.0
        ):
            self._topics_checked_at = time.monotonic()
            self._ensure_topics(raise_errors=False)
        self._log_once(str(code), "%s worker: consumer error: %s", self.name, error)

    def _ensure_topics(self, *, raise_errors: bool) -> None:
        admin = AdminClient(with_logger(common_config(self.settings, bootstrap=self.bootstrap)))
        try:
            ensure_topics(
                admin, self.topics_to_create, self.options.partitions, prefix=self.topic_prefix
            )
        except KafkaException as exc:
            if raise_errors:
                raise BrokerError(
                    f"cannot create the mesh's topics on {self.bootstrap}: {exc}"
                ) from None
            self._log_once("topics", "%s worker: cannot create topics yet: %s", self.name, exc)

    def _log_once(self, kind: str, fmt: str, *args: object) -> None:
        """One line per kind of trouble per 30 s (an outage is one line, not a wall)."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last_log[kind] = now
            log.warning(fmt, *args)

    # ------------------------------------------------------------------ one record

    def _process(self, member: _Member, batch: _Batch[T], msg: Message) -> None:
        """Decode, triage and handle one record into `batch` (its outputs sent, unconfirmed, or
        dead-lettered, or skipped); an exception leaves the record out of the batch."""
        self.stats.bump("consumed")
        record = ConsumedRecord(
            topic=msg.topic() or self.topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=msg.headers(),
        )
        if record.size > self.max_record_bytes:
            self.stats.bump("oversized")
            detail = (
                f"the record has {record.size:,} bytes, above the {self.max_record_bytes:,}-byte "
                f"limit (AIMESH_KAFKA_MAX_MESSAGE_BYTES); {record.where}"
            )
            self._dead_letter(member, record, "too_large", detail, Identity())
            return
        try:
            item = self.handler.decode(record)
        except MessageDecodeError as exc:
            self._dead_letter(member, record, exc.reason, exc.detail, Identity())
            return
        except Exception as exc:  # e.g. RecursionError on absurdly nested JSON
            detail = f"cannot decode the record: {type(exc).__name__}: {exc}"
            self._dead_letter(member, record, "schema_invalid", detail, Identity())
            return
        key = self.handler.idempotency_key(item)
        triage = Triage.DUPLICATE if key in batch.keys else self.handler.triage(item)
        if triage is not Triage.HANDLE:
            self.stats.bump("observed" if triage is Triage.OBSERVE else "duplicates")
            return
        batch.keys.add(key)
        batch.hold(item)
        outputs, failure = self._handle(item)
        if failure is None:
            try:
                batch.sent.append(_Sent(item, record, member.publisher.send(outputs)))
                return
            except PublishError as exc:  # permanent: e.g. an output above the size limit
                failure, reason = str(exc), "output_refused"
        else:
            reason = "node_error"
        self._dead_letter(member, record, reason, failure, self.handler.identity(item))
        batch.dead.append(Delivered(item))

    def _complete(self, member: _Member, batch: _Batch[T]) -> None:
        """Confirm the batch's outputs, tell the handler, commit its records (a failure of the
        loop's own rewinds to the batch's first records and backs off)."""
        if not batch.records:
            return
        try:
            delivered = self._confirm(member, batch.sent)
            if batch.dead or delivered:
                self._tell_delivered([*batch.dead, *delivered])
        except _Stopping:
            raise
        except Exception as exc:  # e.g. the ledger is locked: the batch is handled again
            self._retry_later(member, batch.records, exc)
            return
        self._commit(member, batch.records)

    def _tell_delivered(self, batch: Sequence[Delivered[T]]) -> None:
        """Tell the handler what was delivered. A transient failure (e.g. its ledger's database
        restarting) is retried here, with backoff, for as long as the worker runs: the outputs
        are on the broker already, and handling the batch again would run its steps twice."""
        tries = 0
        while True:
            tries += 1
            try:
                self.handler.delivered(batch)
                return
            except Exception as exc:
                if not self.handler.is_transient(exc):
                    raise
                self.stats.bump("transient_errors")
                self._log_once(
                    "delivered",
                    "%s worker: recording a delivered batch failed, retrying: %s: %s",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                if self._stop.wait(self.options.retry.delay_s(tries)):
                    raise _Stopping from None

    def _confirm(self, member: _Member, sent: Sequence[_Sent[T]]) -> list[Delivered[T]]:
        """Each item with its confirmed outputs; an item whose outputs the broker refuses for
        good is dead-lettered (no outputs)."""
        try:
            deliveries = iter(self._confirmed(member, [s.sending for s in sent]))
        except PublishError:  # permanent: find the items it concerns, one at a time
            return [self._confirm_alone(member, s) for s in sent]
        self.stats.bump("processed", len(sent))
        return [Delivered(s.item, [next(deliveries) for _ in s.sending.outgoing]) for s in sent]

    def _confirm_alone(self, member: _Member, sent: _Sent[T]) -> Delivered[T]:
        try:
            delivered = Delivered(sent.item, self._confirmed(member, [sent.sending]))
            self.stats.bump("processed")
            return delivered
        except PublishError as exc:
            identity = self.handler.identity(sent.item)
            self._dead_letter(member, sent.record, "output_refused", str(exc), identity)
            return Delivered(sent.item)

    def _handle(self, item: T) -> tuple[Sequence[WireModel], str | None]:
        """(outputs, None) on success, ((), why) after the bounded tries; _Stopping if stopped."""
        retry = self.options.retry
        tries = 0
        while True:
            tries += 1
            try:
                return self.handler.handle(item), None
            except Exception as exc:
                transient = self.handler.is_transient(exc)
                summary = f"{type(exc).__name__}: {exc}"
                if transient:
                    self.stats.bump("transient_errors")
                    self._log_once(
                        f"transient:{type(exc).__name__}",
                        "%s worker: infrastructure failure, keeping the message and retrying "
                        "(next in %.1f s): %s",
                        self.name,
                        retry.delay_s(tries),
                        summary,
                    )
                else:
                    self.stats.bump("node_errors")
                    if retry.gives_up(tries, transient):
                        log.error(
                            "%s worker: failed %d time(s), dead-lettering: %s",
                            self.name,
                            tries,
                            summary,
                        )
                        detail = "".join(traceback.format_exception(exc)[-6:])
                        return (), f"{summary} (after {tries} tries)\n{detail}"
                    log.warning("%s worker: failed (try %d): %s", self.name, tries, summary)
                if self._stop.wait(retry.delay_s(tries)):
                    raise _Stopping from None

    def _confirmed(self, member: _Member, sent: Sequence[Sending]) -> list[Delivery]:
        """Wait until the broker confirms; re-send until it does; PublishError if it never
        can; _Stopping if stopped.

        The input offsets are only committed after this returns, so a broker outage holds the
        records (and their partitions) here instead of skipping past them.
        """
        tries = 0
        resets = member.publisher.producer_resets
        while True:
            tries += 1
            try:
                deliveries = member.publisher.confirm(*sent)
                self.stats.bump("producer_restarts", member.publisher.producer_resets - resets)
                return deliveries
            except PublishError as exc:
                if exc.permanent:
                    raise
                self.stats.bump("publish_retries")
                wait = self.options.retry.publish_delay_s(tries)
                self._log_once(
                    "publish", "%s worker: %s; retrying every %.1f s", self.name, exc, wait
                )
                if self._stop.wait(wait):
                    raise _Stopping from None

    def _dead_letter(
        self,
        member: _Member,
        record: ConsumedRecord,
        reason: str,
        error: str,
        identity: Identity,
    ) -> None:
        """Publish a dead letter (bounded tries); the caller commits the record whatever happened."""
        policy = self.options.dead_letters
        log.warning(
            "%s worker: dead-lettering %s: %s", self.name, record.where, error.splitlines()[0]
        )
        letter = dead_letter_for(
            reason=reason, error=error, topic=record.topic, partition=record.partition,
            offset=record.offset, key=record.key, value=record.value, headers=record.headers,
            role=self.name, worker=member.worker_id, task_id=identity.task_id,
            run_id=identity.run_id, attempt=identity.attempt,
            max_raw_bytes=policy.raw_limit(len(record.value or b"")),
        )  # fmt: skip
        for tries in range(1, policy.max_publish_tries + 1):
            try:
                member.publisher.send_dead_letter(letter)
                self.stats.bump("dead_lettered")
                break
            except PublishError as exc:
                if exc.permanent or tries == policy.max_publish_tries:
                    self.stats.bump("dead_letters_lost")
                    log.error(
                        "%s worker: the dead letter of %s could not be published (%s); "
                        "committing the record anyway",
                        self.name,
                        record.where,
                        exc,
                    )
                    break
                if self._stop.wait(self.options.retry.publish_delay_s(tries)):
                    raise _Stopping from None

    def _offsets(self, records: Sequence[Message]) -> dict[tuple[str, int], list[int]]:
        """The offsets of `records`, by (topic, partition)."""
        found: dict[tuple[str, int], list[int]] = {}
        for msg in records:
            where = (msg.topic() or self.topic, msg.partition() or 0)
            found.setdefault(where, []).append(msg.offset() or 0)
        return found

    def _commit(self, member: _Member, records: Sequence[Message]) -> None:
        """Commit past `records` (per partition, the offset after the last one), synchronously."""
        after = {where: max(offsets) + 1 for where, offsets in self._offsets(records).items()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in after.items()]
        try:
            member.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # typically a rebalance took a partition (or a restarted broker forgot the group):
            # its records are redelivered and recognised as duplicates
            self.stats.bump("commit_failures")
            self._log_once(
                "commit",
                "%s worker: commit of %s failed: %s",
                self.name,
                _positions(after),
                exc,
            )


def _positions(offsets: Mapping[tuple[str, int], int]) -> str:
    """`topic[partition]@offset, ...` for a log line."""
    return ", ".join(f"{t}[{p}]@{o}" for (t, p), o in offsets.items())


def _close_consumer(consumer: Consumer) -> None:
    try:
        consumer.close()  # leaves the group: its partitions move at once
    except (KafkaException, RuntimeError) as exc:
        log.warning("closing the consumer: %s", exc)


def install_stop_signals(
    stop: Callable[[], None], message: Callable[[], str]
) -> list[tuple[int, Any]]:
    """SIGTERM/SIGINT: the first stops gracefully (`stop`), a second exits at once. Ctrl-C
    (SIGINT) is told how to force it (a warning); a supervisor's SIGTERM, a normal stop, is
    logged at INFO only."""
    previous: list[tuple[int, Any]] = []
    state = {"count": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        state["count"] += 1
        if state["count"] == 1:
            log.log(logging.WARNING if signum == signal.SIGINT else logging.INFO, message())
            stop()
        else:
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous.append((signum, signal.getsignal(signum)))
        signal.signal(signum, handler)
    return previous


def restore_signals(previous: Sequence[tuple[int, Any]]) -> None:
    for signum, handler in previous:
        signal.signal(signum, handler)
