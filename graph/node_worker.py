"""NodeWorker: one node of the graph as a Kafka consumer-group worker.

The consume loop, retries and dead letters are `kafka_edges.group_worker`'s (generic); this
module holds only what is the mesh's: MeshHandler decodes the role's input topic's EdgeMessage,
leaves the in-process graph's records alone, recognises duplicates by (role, run id, task id,
attempt) in the durable DeliveryLedger, runs the SAME step the in-process graph runs
(`graph.step.run_step`, bound to the node functions and services by the entry point) and turns
the StepRecord into its transition and telemetry. From about a second after the step's start
until its outputs are confirmed the worker holds a lease on the run in the ledger (it is not
taken for a lost run; `kafka_edges.ledger.Leases`).
Once they are confirmed on the broker the input is marked processed and the transition recorded
as the run's last word in flight (what `kafka_edges.recovery` re-publishes if the broker loses
it); then the offset is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from foundation.settings import Settings
from graph.routing import CONSUMER, NODES, PRODUCER, REVIEWER, SANDBOX, SUPERVISOR, input_topic
from graph.step import StepFunction
from graph.topics import ALL_TOPICS
from graph.wire import (
    EDGE_MESSAGE_BY_TOPIC,
    EdgeMessage,
    ReportMessage,
    TelemetryEvent,
    message_for_step,
)
from kafka_edges.admin import qualified
from kafka_edges.codec import WireModel, decode
from kafka_edges.config import group_id as default_group_id
from kafka_edges.config import topic_prefix as settings_topic_prefix
from kafka_edges.delivery_policy import infrastructure_failure
from kafka_edges.group_worker import (
    ConsumedRecord,
    Delivered,
    GroupWorker,
    Identity,
    Triage,
    WorkerError,
    WorkerOptions,
    WorkerStats,
    install_stop_signals,
    restore_signals,
)
from kafka_edges.ledger import DeliveryLedger, Transition
from kafka_edges.recovery import LostRunRecovery
from sandbox.base import SandboxError

log = logging.getLogger(__name__)

__all__ = [
    "MeshHandler",
    "MeshWorkers",
    "NodeWorker",
    "WorkerError",
    "WorkerOptions",
    "WorkerStats",
]


LEDGER_MAX_AGE_S = 7 * 24 * 3600.0
"""Handled keys older than a week are forgotten when a worker opens the ledger (tansu keeps
records in memory only; on a real cluster keep this above the topics' retention)."""


def is_infrastructure_failure(exc: BaseException) -> bool:
    """Node errors that are retried (with backoff, message kept) instead of dead-lettered:
    every InfrastructureError (model server, memory store, LLM endpoint, broker) and every
    sandbox backend failure; the rest are the message's fault."""
    return infrastructure_failure(exc) or isinstance(exc, SandboxError)


def lost_run_recovery(
    settings: Settings, options: WorkerOptions, ledger: DeliveryLedger, topic: str
) -> LostRunRecovery:
    """Re-publishes the ledger's runs the broker lost: after a reset, and stale ones periodically."""
    prefix = settings_topic_prefix(settings, options.topic_prefix)
    return LostRunRecovery(settings, ledger, qualified(topic, prefix), bootstrap=options.bootstrap)


STEP_AFTER_ATTEMPTS = {PRODUCER: 1, CONSUMER: 0, SANDBOX: 1, REVIEWER: 2, SUPERVISOR: 3}


def steps_taken(transition: EdgeMessage) -> int:
    """How many node steps of its run lie behind `transition`: the producer's is 1; each attempt
    adds a consumer and a sandbox step; then the reviewer and the supervisor."""
    if transition.source == PRODUCER:
        return 1
    return 2 * transition.attempt + STEP_AFTER_ATTEMPTS.get(transition.source, 0)


class MeshHandler:
    """The mesh's RecordHandler for node `role`: EdgeMessage in, transition + telemetry out."""

    def __init__(
        self,
        role: str,
        step: StepFunction,
        ledger: DeliveryLedger,
        *,
        continue_in_process: bool = False,
        lease_renew_s: float = 10.0,
    ) -> None:
        if role not in NODES:
            raise WorkerError(f"unknown role {role!r}; expected one of {', '.join(NODES)}")
        self.name = role
        self.lease_renew_s = lease_renew_s
        self.role = role
        self.step = step
        self.ledger = ledger
        self.continue_in_process = continue_in_process
        self.model = EDGE_MESSAGE_BY_TOPIC[input_topic(role)]

    def decode(self, record: ConsumedRecord) -> EdgeMessage:
        return decode(self.model, record.value)

    def idempotency_key(self, item: EdgeMessage) -> Hashable:
        return item.idempotency_key

    def triage(self, item: EdgeMessage) -> Triage:
        if item.origin == "in_process" and not self.continue_in_process:
            # a record of a run the in-process graph is doing itself: observe, don't redo it
            return Triage.OBSERVE
        if self.ledger.seen(self.role, item.idempotency_key):
            log.info(
                "%s worker: skipping duplicate %s attempt %d", self.role, item.task_id, item.attempt
            )
            return Triage.DUPLICATE
        return Triage.HANDLE

    @contextmanager
    def leases(self) -> Iterator[Callable[[EdgeMessage], None]]:
        """Leases on the batch's runs until their outputs are confirmed: a long step, or outputs
        still on their way to a restarted broker, are not taken for a lost run
        (`kafka_edges.recovery`)."""
        with self.ledger.leases(renew_every_s=self.lease_renew_s) as held:
            yield lambda item: held.hold(item.run_id)

    def handle(self, item: EdgeMessage) -> Sequence[WireModel]:
        _update, record = self.step(self.role, item.state)
        return [message_for_step(record, origin="worker"), TelemetryEvent.from_step(record)]

    def is_transient(self, exc: BaseException) -> bool:
        return is_infrastructure_failure(exc)

    def delivered(self, batch: Sequence[Delivered[EdgeMessage]]) -> None:
        """Mark the inputs processed and record each run's transition as its last word in
        flight (the bytes published, not encoded again), in one ledger transaction."""
        transitions: list[Transition] = []
        dead: list[str] = []
        for done in batch:
            delivery = done.deliveries[0] if done.deliveries else None
            if delivery is None or not isinstance(delivery.message, EdgeMessage):
                dead.append(done.item.run_id)  # dead-lettered: nothing more will come
                continue
            transitions.append(
                Transition(
                    delivery.message.run_id,
                    delivery.topic,
                    delivery.record,
                    done=isinstance(delivery.message, ReportMessage),
                    progress=steps_taken(delivery.message),
                )
            )
        with self.ledger.transaction():
            self.ledger.mark(self.role, *(done.item.idempotency_key for done in batch))
            self.ledger.record_all_in_flight(transitions)
            for run_id in dead:
                self.ledger.finish(run_id)

    def identity(self, item: EdgeMessage) -> Identity:
        return Identity(task_id=item.task_id, run_id=item.run_id, attempt=item.attempt)


class NodeWorker(GroupWorker[EdgeMessage]):
    """Run node `role` for every message on its input topic, as `options.concurrency` members.

    >>> with NodeWorker("consumer", settings, step, WorkerOptions(concurrency=2)):  # doctest: +SKIP
    ...     ...                                                 # background threads
    >>> NodeWorker("consumer", settings, step).run()            # doctest: +SKIP (blocks; SIGTERM stops)

    `ledger`: the durable record of handled inputs (default: `DeliveryLedger.for_settings`,
    shared by every worker on the host, or of the mesh with a database URL); `continue_in_process`: also act on the in-process
    graph's transitions (normally only observed); `recover_lost_runs`: re-publish the ledger's
    runs the broker lost (`kafka_edges.recovery`): all in flight when the broker forgets its
    topics (a restarted memory-only broker), and any that has not moved for
    `settings.kafka_stale_run_s`.
    """

    def __init__(
        self,
        role: str,
        settings: Settings,
        step: StepFunction,
        options: WorkerOptions | None = None,
        *,
        ledger: DeliveryLedger | None = None,
        continue_in_process: bool = False,
        recover_lost_runs: bool = False,
    ) -> None:
        if role not in NODES:
            raise WorkerError(f"unknown role {role!r}; expected one of {', '.join(NODES)}")
        options = options or WorkerOptions()
        self.role = role
        if ledger is None:
            ledger = DeliveryLedger.for_settings(settings)
            ledger.prune(LEDGER_MAX_AGE_S)
        self.ledger = ledger
        handler = MeshHandler(
            role,
            step,
            self.ledger,
            continue_in_process=continue_in_process,
            lease_renew_s=settings.kafka_stale_run_s / 3,
        )
        self.input_topic = input_topic(role)
        super().__init__(
            handler,
            self.input_topic,
            settings,
            options,
            group_id=default_group_id(settings, role),
            topics_to_create=ALL_TOPICS,
        )
        self.recovery = (
            lost_run_recovery(settings, options, self.ledger, self.input_topic)
            if recover_lost_runs
            else None
        )

    def start(self) -> Self:
        started = not self._threads
        super().start()
        if started and self.recovery is not None:
            self.recovery.start()
        return self

    def stop(self) -> None:
        super().stop()
        if self.recovery is not None:
            self.recovery.stop()


class MeshWorkers:
    """Several NodeWorkers in one process (e.g. every role, for a laptop-sized mesh)."""

    def __init__(
        self,
        roles: Iterable[str],
        settings: Settings,
        step: StepFunction,
        options: WorkerOptions | None = None,
        *,
        ledger: DeliveryLedger | None = None,
        continue_in_process: bool = False,
        recover_lost_runs: bool = False,
    ) -> None:
        self.ledger = ledger or DeliveryLedger.for_settings(settings)
        self.recovery = (
            lost_run_recovery(settings, options or WorkerOptions(), self.ledger, ALL_TOPICS[0])
            if recover_lost_runs
            else None
        )
        self.workers = [
            NodeWorker(
                role,
                settings,
                step,
                options,
                ledger=self.ledger,
                continue_in_process=continue_in_process,
            )
            for role in roles
        ]

    def start(self) -> Self:
        for worker in self.workers:
            worker.start()
        if self.recovery is not None:
            self.recovery.start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.recovery is not None:
            self.recovery.stop()

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
            restore = install_stop_signals(
                self.stop, lambda: "workers stopping after their current message"
            )
        try:
            while not self.join(0.5):
                pass
        finally:
            self.stop()
            restore_signals(restore)
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
