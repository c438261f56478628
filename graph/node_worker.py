"""NodeWorker: one node of the graph as a Kafka consumer-group worker.

Per message: decode and validate -> skip duplicates -> run the SAME step the in-process graph
runs (`graph.step.run_step`, bound to the node functions and services by the entry point) -> publish the transition and its telemetry (confirmed) -> commit
the input offset. Delivery is at-least-once: a worker that dies before committing has its
message redelivered to another member of the group; duplicates are recognised by
(role, run id, task id, attempt) and skipped. Malformed messages and messages the node keeps
failing on go to the dead-letter topic with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Self

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from graph.edges import StepRecord
from graph.kafka_sink import KafkaEdgeSink
from graph.routing import NODES, input_topic
from graph.step import StepFunction
from graph.topics import ALL_TOPICS
from graph.wire import EDGE_MESSAGE_BY_TOPIC, EdgeMessage
from kafka_edges.admin import DEFAULT_PARTITIONS, ensure_topics, qualified
from kafka_edges.broker import BrokerError, check_reachable
from kafka_edges.codec import MessageDecodeError, decode
from kafka_edges.config import common_config, consumer_config, require_bootstrap, with_logger
from kafka_edges.config import group_id as default_group_id
from kafka_edges.config import topic_prefix as settings_topic_prefix
from kafka_edges.dead_letters import dead_letter_for
from kafka_edges.publisher import PublishError
from sandbox.base import SandboxError

log = logging.getLogger(__name__)

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (InfrastructureError, SandboxError)
"""Node errors that are retried (with backoff) instead of dead-lettering the task."""

IdempotencyKey = tuple[str, str, str, int]


class WorkerError(RuntimeError):
    """A worker cannot run (bad role, no nodes, a fatal consumer error)."""


class ProcessedKeys:
    """The inputs this worker process has already handled, most recent `capacity` kept.

    Messages of one task share a key, hence a partition, hence (outside a rebalance) the same
    group member: a redelivered or re-published duplicate is seen by the member that handled
    the original, which is where this record lives.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[IdempotencyKey, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: IdempotencyKey) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def add(self, key: IdempotencyKey) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class WorkerStats:
    """Counters for one NodeWorker (all members)."""

    consumed: int = 0
    processed: int = 0
    duplicates: int = 0
    observed: int = 0
    dead_lettered: int = 0
    node_errors: int = 0
    publish_retries: int = 0
    commit_failures: int = 0
    assignments: dict[int, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + by)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "consumed": self.consumed,
                "processed": self.processed,
                "duplicates": self.duplicates,
                "observed": self.observed,
                "dead_lettered": self.dead_lettered,
                "node_errors": self.node_errors,
                "publish_retries": self.publish_retries,
                "commit_failures": self.commit_failures,
                "assignments": {k: list(v) for k, v in self.assignments.items()},
            }


@dataclass
class _Member:
    index: int
    worker_id: str
    consumer: Consumer
    sink: KafkaEdgeSink


class NodeWorker:
    """Run node `role` for every message on its input topic, as `concurrency` group members.

    >>> with NodeWorker("consumer", settings, concurrency=2):   # doctest: +SKIP
    ...     ...                                                 # background threads
    >>> NodeWorker("consumer", settings).run()                  # doctest: +SKIP (blocks; SIGTERM stops)
    """

    def __init__(
        self,
        role: str,
        settings: Settings,
        step: StepFunction,
        *,
        concurrency: int = 1,
        bootstrap: str | None = None,
        topic_prefix: str | None = None,
        group_id: str | None = None,
        max_node_tries: int = 3,
        node_retry_backoff_s: float = 0.5,
        transient_errors: tuple[type[BaseException], ...] = INFRASTRUCTURE_ERRORS,
        poll_timeout_s: float = 0.2,
        create_topics: bool = True,
        partitions: int = DEFAULT_PARTITIONS,
        connect_timeout_s: float = 5.0,
        consumer_overrides: Mapping[str, Any] | None = None,
        sink_options: Mapping[str, Any] | None = None,
        processed: ProcessedKeys | None = None,
        continue_in_process: bool = False,
    ) -> None:
        if role not in NODES:
            raise WorkerError(f"unknown role {role!r}; expected one of {', '.join(NODES)}")
        if concurrency < 1:
            raise WorkerError("concurrency must be at least 1")
        self.role = role
        self.settings = settings
        self.concurrency = concurrency
        self.bootstrap = require_bootstrap(self.settings, bootstrap)
        self.topic_prefix = settings_topic_prefix(self.settings, topic_prefix)
        self.input_topic = input_topic(role)
        self.topic = qualified(self.input_topic, self.topic_prefix)
        self.group_id = group_id or default_group_id(self.settings, role)
        self.max_node_tries = max(1, max_node_tries)
        self.node_retry_backoff_s = node_retry_backoff_s
        self.transient_errors = transient_errors
        self.poll_timeout_s = poll_timeout_s
        self.create_topics = create_topics
        self.partitions = partitions
        self.connect_timeout_s = connect_timeout_s
        self.consumer_overrides = dict(consumer_overrides or {})
        self.sink_options = dict(sink_options or {})
        self.processed = processed or ProcessedKeys()
        self.continue_in_process = continue_in_process
        self.stats = WorkerStats()
        self._model = EDGE_MESSAGE_BY_TOPIC[self.input_topic]
        self._step = step
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._joined: set[int] = set()
        self._joined_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Check the broker, create missing topics, start the members (background threads)."""
        if self._threads:
            return self
        check_reachable(
            self.bootstrap, self.settings.kafka_config, timeout_s=self.connect_timeout_s
        )
        if self.create_topics:
            admin = AdminClient(with_logger(common_config(self.settings, bootstrap=self.bootstrap)))
            try:
                ensure_topics(admin, ALL_TOPICS, self.partitions, prefix=self.topic_prefix)
            except KafkaException as exc:
                raise BrokerError(
                    f"cannot create the mesh's topics on {self.bootstrap}: {exc}"
                ) from None
        self._stop.clear()
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._member_main,
                args=(index,),
                name=f"aimesh-{self.role}-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        log.info(
            "%s worker: %d member(s) in group %s on %s (%s)",
            self.role,
            self.concurrency,
            self.group_id,
            self.topic,
            self.bootstrap,
        )
        return self

    def stop(self) -> None:
        """Ask the members to stop after their current message (non-blocking)."""
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
            raise WorkerError(f"{self.role} worker failed: {error}") from error
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

        The first signal stops after the current message (its output published and its offset
        committed); a second one exits at once (the uncommitted message is redelivered).
        """
        self.start()
        restore: list[tuple[int, Any]] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            restore = _install_stop_signals(self.stop, self.stopping_message)
        try:
            while not self.join(0.5):
                pass
        finally:
            self.stop()
            for signum, handler in restore:
                signal.signal(signum, handler)
        return self.stats

    def stopping_message(self) -> str:
        return f"{self.role} worker stopping after the current message (again to exit now)"

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
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{self.role}:{index}"
        consumer: Consumer | None = None
        sink: KafkaEdgeSink | None = None
        try:
            consumer = Consumer(
                with_logger(
                    consumer_config(
                        self.settings,
                        self.group_id,
                        bootstrap=self.bootstrap,
                        client=self.role,
                        overrides=self.consumer_overrides,
                    )
                )
            )
            sink = KafkaEdgeSink(
                self.settings,
                bootstrap=self.bootstrap,
                topic_prefix=self.topic_prefix,
                client=self.role,
                origin="worker",
                extra_headers={"worker": worker_id},
                **self.sink_options,
            )
            member = _Member(index, worker_id, consumer, sink)

            def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
                self._record_assignment(index, added=partitions)

            def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
                self._record_assignment(index, removed=partitions)

            consumer.subscribe(
                [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
            )
            while not self._stop.is_set():
                msg = consumer.poll(self.poll_timeout_s)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    self._consumer_error(error)
                    continue
                self._handle(member, msg)
        except BaseException as exc:
            log.exception("%s worker member %d failed", self.role, index)
            self._errors.append(exc)
            self._stop.set()
        finally:
            if consumer is not None:
                try:
                    consumer.close()  # leaves the group: its partitions move at once
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the consumer: %s", exc)
            if sink is not None:
                sink.close()

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

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise WorkerError(f"fatal Kafka consumer error: {error}")
        if error.code() == KafkaError._PARTITION_EOF:
            return
        log.warning("%s worker: consumer error: %s", self.role, error)

    # ------------------------------------------------------------------ one message

    def _handle(self, member: _Member, msg: Message) -> None:
        self.stats.bump("consumed")
        topic, partition, offset = msg.topic() or self.topic, msg.partition(), msg.offset()
        try:
            message = decode(self._model, msg.value())
        except MessageDecodeError as exc:
            log.warning(
                "%s worker: dead-lettering %s[%s]@%s: %s", self.role, topic, partition, offset, exc
            )
            dead = dead_letter_for(
                reason=exc.reason, error=exc.detail, topic=topic, partition=partition, offset=offset,
                key=msg.key(), value=msg.value(), headers=msg.headers(), role=self.role, worker=member.worker_id,
            )  # fmt: skip
            if self._deliver(member, lambda: member.sink.send_dead_letter(dead)):
                self.stats.bump("dead_lettered")
                self._commit(member, msg)
            return

        if message.origin == "in_process" and not self.continue_in_process:
            # a record of a run the in-process graph is doing itself: observe, don't redo it
            self.stats.bump("observed")
            self._commit(member, msg)
            return

        key: IdempotencyKey = (self.role, *message.idempotency_key)
        if self.processed.seen(key):
            log.info(
                "%s worker: skipping duplicate %s attempt %d",
                self.role,
                message.task_id,
                message.attempt,
            )
            self.stats.bump("duplicates")
            self._commit(member, msg)
            return

        outcome = self._run_node(member, message)
        if outcome is None:  # stopping while a transient error persisted: leave it uncommitted
            return
        record, failure = outcome
        if record is not None:
            step_record = record
            delivered = self._deliver(member, lambda: member.sink.publish_step(step_record))
            if not delivered:
                return
            self.stats.bump("processed")
        else:
            dead = dead_letter_for(
                reason="node_error", error=failure or "node failed", topic=topic, partition=partition,
                offset=offset, key=msg.key(), value=msg.value(), headers=msg.headers(), role=self.role,
                worker=member.worker_id, task_id=message.task_id, run_id=message.run_id,
                attempt=message.attempt,
            )  # fmt: skip
            if not self._deliver(member, lambda: member.sink.send_dead_letter(dead)):
                return
            self.stats.bump("dead_lettered")
        self.processed.add(key)
        self._commit(member, msg)

    def _run_node(
        self, member: _Member, message: EdgeMessage
    ) -> tuple[StepRecord | None, str | None] | None:
        """(record, None) on success, (None, error) after the bounded tries, None if stopping."""
        tries = 0
        while True:
            tries += 1
            try:
                _update, record = self._step(self.role, message.state)
                return record, None
            except Exception as exc:
                self.stats.bump("node_errors")
                transient = isinstance(exc, self.transient_errors)
                summary = f"{type(exc).__name__}: {exc}"
                if not transient and tries >= self.max_node_tries:
                    log.error(
                        "%s worker: %s attempt %d failed %d time(s), dead-lettering: %s",
                        self.role, message.task_id, message.attempt, tries, summary,
                    )  # fmt: skip
                    detail = "".join(traceback.format_exception(exc)[-6:])
                    return None, f"{summary} (after {tries} tries)\n{detail}"
                log.warning(
                    "%s worker: %s failed (try %d): %s", self.role, message.task_id, tries, summary
                )
                wait = min(30.0, self.node_retry_backoff_s * 2 ** (tries - 1))
                if self._stop.wait(wait):
                    return None

    def _deliver(self, member: _Member, action: Callable[[], object]) -> bool:
        """Run a publish until the broker confirms it; False if the worker stops first.

        The input offset is only committed after this returns True, so a broker outage holds
        the message (and its partition) here instead of skipping past it.
        """
        backoff = 0.5
        while True:
            try:
                action()
                return True
            except PublishError as exc:
                self.stats.bump("publish_retries")
                log.error("%s worker: %s; retrying in %.1f s", self.role, exc, backoff)
                if self._stop.wait(backoff):
                    return False
                backoff = min(backoff * 2, 10.0)

    def _commit(self, member: _Member, msg: Message) -> None:
        try:
            member.consumer.commit(message=msg, asynchronous=False)
        except KafkaException as exc:
            # typically a rebalance took the partition: the message is redelivered to its new
            # owner, and the output we already published is recognised as a duplicate downstream
            self.stats.bump("commit_failures")
            log.warning(
                "%s worker: commit of %s[%s]@%s failed: %s",
                self.role,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )


def _install_stop_signals(
    stop: Callable[[], None], message: Callable[[], str]
) -> list[tuple[int, Any]]:
    previous: list[tuple[int, Any]] = []
    state = {"count": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        state["count"] += 1
        if state["count"] == 1:
            log.warning(message())
            stop()
        else:
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous.append((signum, signal.getsignal(signum)))
        signal.signal(signum, handler)
    return previous


class MeshWorkers:
    """Several NodeWorkers in one process (e.g. every role, for a laptop-sized mesh)."""

    def __init__(
        self, roles: Iterable[str], settings: Settings, step: StepFunction, **options: Any
    ) -> None:
        self.workers = [NodeWorker(role, settings, step, **options) for role in roles]

    def start(self) -> Self:
        for worker in self.workers:
            worker.start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def join(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        done = True
        for worker in self.workers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = worker.join(remaining) and done
        return done

    def wait_joined(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(w.wait_joined(max(0.0, deadline - time.monotonic())) for w in self.workers)

    def run(self, *, install_signal_handlers: bool = True) -> dict[str, WorkerStats]:
        self.start()
        restore: list[tuple[int, Any]] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            restore = _install_stop_signals(
                self.stop, lambda: "workers stopping after their current message"
            )
        try:
            while not self.join(0.5):
                pass
        finally:
            self.stop()
            for signum, handler in restore:
                signal.signal(signum, handler)
        return {w.role: w.stats for w in self.workers}

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
