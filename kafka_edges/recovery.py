"""Re-publish what the broker lost, from the DeliveryLedger.

The mesh's delivery is at-least-once with idempotent handlers: every worker records in the
ledger the last transition of each unfinished run and the inputs it has handled. The broker's
log is therefore not the only copy of a run's progress, and whatever the broker loses can be
published again: a copy that was not lost after all reaches a worker that recognises it (the
ledger holds its key) and skips it. Two triggers, each safe to fire twice:

- BrokerResetWatch (the fast path): the broker forgot its topics (a restarted memory-only
  broker gives a topic a new id). Every run not moved since the reset was seen is re-published,
  `settle_s` after it, when the consumers have rejoined the new broker's groups.
- StaleRunSweeper (the safety net, whatever the cause): every `every_s`, a run that has not
  moved for `stale_s` — no transition recorded, no worker holding a lease on it
  (`DeliveryLedger.leases`) — is taken for lost and re-published. It covers what no watch
  sees: records skipped by a consumer group whose offsets went past them, a watch that fired
  before the workers noticed the new broker, a reset missed while a worker was down.

Several processes may run both, on a host (a SQLite ledger) or on every host (a Postgres one):
`DeliveryLedger.take_stale` gives each stale run to one of them per period, and a copy that
still slips through is a duplicate, skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from kafka_edges.config import common_config, with_logger
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.publisher import KafkaPublisher, PublishError

log = logging.getLogger(__name__)


def republish_in_flight(
    settings: Settings,
    ledger: DeliveryLedger,
    *,
    bootstrap: str | None = None,
    older_than_s: float = 0.0,
) -> int:
    """Publish again, confirmed, the last record of each unfinished stream that has not moved
    for `older_than_s`; return how many. Raises PublishError if the broker does not confirm
    them (they are taken: the next sweep retries them once they are stale again)."""
    pending = ledger.take_stale(not_after=time.time() - older_than_s)
    if not pending:
        return 0
    with KafkaPublisher(settings, bootstrap=bootstrap, client="recover") as publisher:
        publisher.publish_records([(f.topic, f.record) for f in pending])
    log.info("re-published %d in-flight record(s)", len(pending))
    return len(pending)


class _Every(ABC):
    """A daemon thread calling `tick` every `interval_s` until stopped."""

    def __init__(self, name: str, interval_s: float) -> None:
        self.interval_s = interval_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def tick(self) -> None:
        """One round of the thread's work."""

    def start(self) -> _Every:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`; True if stopped meanwhile."""
        return self._stop.wait(seconds)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()


class StaleRunSweeper(_Every):
    """Every `every_s`, re-publish the runs that have not moved for `stale_s` (see the module)."""

    def __init__(
        self,
        settings: Settings,
        ledger: DeliveryLedger,
        *,
        bootstrap: str | None = None,
        stale_s: float | None = None,
        every_s: float | None = None,
    ) -> None:
        self.stale_s = settings.kafka_stale_run_s if stale_s is None else stale_s
        super().__init__("aimesh-stale-sweep", every_s or min(30.0, max(1.0, self.stale_s / 4)))
        self.settings = settings
        self.ledger = ledger
        self.bootstrap = bootstrap
        self.republished = 0

    def tick(self) -> None:
        try:
            count = republish_in_flight(
                self.settings, self.ledger, bootstrap=self.bootstrap, older_than_s=self.stale_s
            )
        except (PublishError, InfrastructureError) as exc:  # the broker or the ledger's database
            log.warning("re-publishing stale runs failed (next sweep retries): %s", exc)
            return
        if count:
            self.republished += count
            log.warning(
                "re-published %d run(s) that had not moved for %.0f s (lost by the broker?)",
                count,
                self.stale_s,
            )


class BrokerResetWatch(_Every):
    """Notices that the broker forgot its topics and calls `on_reset` once per such event.

    A restarted memory-only broker (or a topic deleted and re-created on a real cluster) gives
    `topic` a new topic id; `on_reset` runs `settle_s` after the change is seen (consumers
    notice the new broker at their next heartbeat and rejoin its groups within about half a
    session timeout on tansu). While the broker is unreachable the watch just keeps asking.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        on_reset: Callable[[], object],
        *,
        bootstrap: str | None = None,
        interval_s: float = 1.0,
        settle_s: float = 3.0,
    ) -> None:
        super().__init__("aimesh-broker-watch", interval_s)
        self.topic = topic
        self.on_reset = on_reset
        self.settle_s = settle_s
        self.resets = 0
        self._admin = AdminClient(with_logger(common_config(settings, bootstrap=bootstrap)))
        self._last_id: str | None = None

    def topic_id(self) -> str | None:
        """The topic's id now (None if the broker does not answer or does not know it)."""
        try:
            futures = self._admin.describe_topics(
                TopicCollection([self.topic]), request_timeout=max(1.0, self.interval_s)
            )
            return str(futures[self.topic].result().topic_id)
        except Exception:  # unreachable, unknown topic, timeout: ask again later
            return None

    def start(self) -> BrokerResetWatch:
        if self._last_id is None:
            self._last_id = self.topic_id()
        super().start()
        return self

    def tick(self) -> None:
        current = self.topic_id()
        if current is None:
            return
        if self._last_id is not None and current != self._last_id:
            log.warning(
                "the broker forgot its topics (%s has a new id): acting on it in %.0f s",
                self.topic,
                self.settle_s,
            )
            if self.wait(self.settle_s):
                return
            self.resets += 1
            try:
                self.on_reset()
            except Exception as exc:
                log.error("recovery after a broker reset failed: %s", exc)
            current = self.topic_id() or current
        self._last_id = current


class LostRunRecovery:
    """Both triggers for one worker process: the broker-reset watch on `topic` and the sweep."""

    def __init__(
        self,
        settings: Settings,
        ledger: DeliveryLedger,
        topic: str,
        *,
        bootstrap: str | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.bootstrap = bootstrap
        self.watch = BrokerResetWatch(settings, topic, self._after_reset, bootstrap=bootstrap)
        self.sweeper = StaleRunSweeper(settings, ledger, bootstrap=bootstrap)

    def _after_reset(self) -> None:
        # the runs not moved since the reset was seen: what moved since is on the new broker
        count = republish_in_flight(
            self.settings, self.ledger, bootstrap=self.bootstrap, older_than_s=self.watch.settle_s
        )
        # every process on the host runs this; the one that claimed the runs says so
        (log.warning if count else log.info)(
            "re-published %d in-flight transition(s) after the broker reset", count
        )

    def start(self) -> LostRunRecovery:
        self.watch.start()
        self.sweeper.start()
        return self

    def stop(self) -> None:
        self.watch.stop()
        self.sweeper.stop()
