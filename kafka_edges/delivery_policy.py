"""What a group worker does when handling a record fails: retry (how often, how long to wait),
or give up and dead-letter it (and what a dead letter may carry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from foundation.backoff import exponential_delay
from foundation.errors import InfrastructureError

TransientPredicate = Callable[[BaseException], bool]
"""True when an error is the infrastructure's fault (retry the record), not the record's."""


def infrastructure_failure(exc: BaseException) -> bool:
    """The default rule: an InfrastructureError that does not declare itself `permanent`."""
    return isinstance(exc, InfrastructureError) and not getattr(exc, "permanent", False)


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing handler is retried.

    A transient (infrastructure) failure is retried with backoff for as long as the worker
    runs: the record stays uncommitted, and nothing is dead-lettered because a service was
    down. Any other failure is retried up to `max_tries` times in all, then dead-lettered.
    """

    max_tries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    publish_backoff_s: float = 0.5
    max_publish_backoff_s: float = 10.0

    def gives_up(self, tries: int, transient: bool) -> bool:
        """Whether to stop retrying after `tries` failed tries."""
        return not transient and tries >= max(1, self.max_tries)

    def delay_s(self, tries: int) -> float:
        """The wait before try `tries + 1` (exponential, capped)."""
        return exponential_delay(tries, self.backoff_s, self.max_backoff_s)

    def publish_delay_s(self, tries: int) -> float:
        """The wait before re-publishing outputs the broker did not confirm."""
        return exponential_delay(tries, self.publish_backoff_s, self.max_publish_backoff_s)


@dataclass(frozen=True)
class DeadLetterPolicy:
    """What a dead letter carries and how hard the worker tries to publish one.

    A record's raw value goes into its dead letter whole up to `max_raw_bytes`; a longer one
    (e.g. a record above the message size limit) only as its first `truncated_raw_bytes` bytes,
    with its size and coordinates. A dead letter the broker does not confirm after
    `max_publish_tries` is logged and counted, and the record is committed anyway: no record
    may stop a worker from taking the next one.
    """

    max_raw_bytes: int = 64 * 1024
    truncated_raw_bytes: int = 4 * 1024
    max_publish_tries: int = 5

    def raw_limit(self, size: int) -> int | None:
        """The bytes of a `size`-byte value to keep (None: all of it)."""
        return None if size <= self.max_raw_bytes else self.truncated_raw_bytes
