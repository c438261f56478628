"""What a GroupWorker asks of the application: the RecordHandler protocol and the values it
passes (a consumed record, the triage of a decoded one, what a dead letter should name, what was
delivered for a handled one)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from kafka_edges.codec import RawHeaders, WireModel
from kafka_edges.publisher import Delivery

T = TypeVar("T")


class Triage(Enum):
    """What to do with a decoded record."""

    HANDLE = "handle"
    OBSERVE = "observe"  # not for this worker to act on (commit it)
    DUPLICATE = "duplicate"  # already handled (commit it)


@dataclass(frozen=True)
class ConsumedRecord:
    """A record as consumed, with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: RawHeaders

    @property
    def size(self) -> int:
        items = self.headers.items() if isinstance(self.headers, Mapping) else (self.headers or [])
        headers = sum(len(n) + len(v or b"") for n, v in items)
        return len(self.key or b"") + len(self.value or b"") + headers

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Identity:
    """What a dead letter names about the message it gave up on (when known)."""

    task_id: str | None = None
    run_id: str | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class Delivered(Generic[T]):
    """A handled item and its confirmed outputs (none when it was dead-lettered)."""

    item: T
    deliveries: Sequence[Delivery] = ()


class RecordHandler(Protocol[T]):
    """What a GroupWorker asks of the application, per record."""

    name: str
    """Names the worker in logs, dead letters and client ids (e.g. the node's role)."""

    def decode(self, record: ConsumedRecord) -> T:
        """The record's message; MessageDecodeError (with its reason) if it cannot be used."""
        ...

    def triage(self, item: T) -> Triage:
        """Handle it, or skip it as not ours / already handled."""
        ...

    def idempotency_key(self, item: T) -> Hashable:
        """Equal for an item and its redeliveries: a second one in the same batch is a duplicate
        (`triage` only knows what earlier batches `delivered`)."""
        ...

    def leases(self) -> AbstractContextManager[Callable[[T], None]]:
        """For one batch: a function called with each item as its work starts, whose lease on
        the item lasts until the block ends (its outputs confirmed, or dead-lettered): e.g. so
        that a recovery sweep does not take a long step for a lost one."""
        ...

    def handle(self, item: T) -> Sequence[WireModel]:
        """Do the work; the messages to publish (confirmed) before the record is committed."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """True: the failure is the infrastructure's (retry, keep the record)."""
        ...

    def delivered(self, batch: Sequence[Delivered[T]]) -> None:
        """A batch's outputs are confirmed (an item dead-lettered has none); its records are
        committed after this returns."""
        ...

    def identity(self, item: T) -> Identity:
        """What a dead letter of this item should name."""
        ...
