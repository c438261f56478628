"""Re-publish what a memory-only broker lost: the last record of every stream still in flight,
from the DeliveryLedger (`aimesh recover`, or automatically when BrokerResetWatch sees the
broker forget its topics)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient

from foundation.settings import Settings
from kafka_edges.config import common_config, with_logger
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.publisher import KafkaPublisher

log = logging.getLogger(__name__)


def republish_in_flight(
    settings: Settings,
    ledger: DeliveryLedger,
    *,
    bootstrap: str | None = None,
    older_than_s: float = 0.0,
) -> int:
    """Publish again, confirmed, the last record of each unfinished stream; return how many.

    Safe to run at any time: a stream whose record was not lost is re-published too, and the
    worker that receives it again recognises it as a duplicate (the ledger holds its key) or,
    if it never handled it, handles it once. `older_than_s` skips streams that moved within
    that many seconds (they are probably still on the broker).
    """
    cutoff = time.time() - older_than_s
    pending = [f for f in ledger.in_flight() if f.at <= cutoff]
    if not pending:
        return 0
    with KafkaPublisher(settings, bootstrap=bootstrap, client="recover") as publisher:
        publisher.publish_records([(f.topic, f.record) for f in pending])
    log.info("re-published %d in-flight record(s)", len(pending))
    return len(pending)


class BrokerResetWatch:
    """Notices that the broker forgot its topics and calls `on_reset` once per such event.

    A restarted memory-only broker (or a topic deleted and re-created on a real cluster) gives
    `topic` a new topic id; `on_reset` runs `settle_s` after the change is seen, so running
    consumers have noticed the new broker first (see `aimesh recover --settle`). While the
    broker is unreachable the watch just keeps asking.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        on_reset: Callable[[], object],
        *,
        bootstrap: str | None = None,
        interval_s: float = 2.0,
        settle_s: float = 8.0,
    ) -> None:
        self.topic = topic
        self.on_reset = on_reset
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.resets = 0
        self._admin = AdminClient(with_logger(common_config(settings, bootstrap=bootstrap)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
        if self._thread is not None:
            return self
        self._last_id = self.topic_id()
        self._thread = threading.Thread(target=self._run, name="aimesh-broker-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            current = self.topic_id()
            if current is None:
                continue
            if self._last_id is not None and current != self._last_id:
                log.warning(
                    "the broker forgot its topics (%s has a new id): re-publishing the runs in "
                    "flight in %.0f s",
                    self.topic,
                    self.settle_s,
                )
                if self._stop.wait(self.settle_s):
                    return
                self.resets += 1
                try:
                    self.on_reset()
                except Exception as exc:
                    log.error("recovery after a broker reset failed: %s", exc)
                current = self.topic_id() or current
            self._last_id = current
