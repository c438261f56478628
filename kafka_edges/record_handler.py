"""What a GroupWorker asks of the application: the RecordHandler protocol and the values it
passes (a consumed record, the triage of a decoded one, what a dead letter should name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from kafka_edges.codec import RawHeaders, WireModel

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

    def working_on(self, item: T) -> AbstractContextManager[object]:
        """Held from the start of the work until its outputs are delivered (or the record is
        dead-lettered): e.g. a lease that tells a recovery sweep the item is not lost."""
        ...

    def handle(self, item: T) -> Sequence[WireModel]:
        """Do the work; the messages to publish (confirmed) before the record is committed."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """True: the failure is the infrastructure's (retry, keep the record)."""
        ...

    def delivered(self, item: T, outputs: Sequence[WireModel]) -> None:
        """The outputs are confirmed (or the record was dead-lettered: `outputs` empty)."""
        ...

    def identity(self, item: T) -> Identity:
        """What a dead letter of this item should name."""
        ...
