"""Re-publish what a memory-only broker lost: the last record of every stream still in flight,
from the DeliveryLedger (`aimesh recover`)."""

from __future__ import annotations

import logging
import time

from foundation.settings import Settings
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
