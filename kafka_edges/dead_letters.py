"""Dead letters: a record a worker could not use, why, where it came from, and (a bounded part
of) its raw bytes, on the dead-letter topic."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from kafka_edges.codec import (
    H_ATTEMPT,
    H_RUN_ID,
    H_TASK_ID,
    RawHeaders,
    WireModel,
    headers_dict,
    utc_now,
)

DEAD_LETTER_TOPIC = "ai_dead_letter"
"""The topic of dead letters (before any deployment prefix)."""


class DeadLetter(WireModel):
    """`ai_dead_letter`: a message a worker could not handle, why, and the raw bytes."""

    TOPIC: ClassVar[str] = DEAD_LETTER_TOPIC
    TYPE: ClassVar[str] = "dead_letter"

    reason: Literal[
        "malformed_json",
        "not_utf8",
        "empty_value",
        "schema_invalid",
        "unsupported_schema_version",
        "node_error",
        "unknown_topic",
        "too_large",
        "output_refused",
    ]
    error: str = Field(description="what went wrong, readable")
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    raw_value: str | None = Field(
        None, description="the original value: text, or base64 (see raw_encoding)"
    )
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_size: int | None = Field(None, description="the original value's size in bytes")
    raw_truncated: bool = Field(
        False, description="raw_value holds only the first bytes of the original value"
    )
    role: str | None = Field(None, description="the worker role that gave up on it")
    worker: str | None = None
    failed_at: datetime = Field(default_factory=utc_now)
    task_id: str | None = None
    run_id: str | None = None
    attempt: int | None = None

    @staticmethod
    def encode_raw(
        value: bytes | None, truncated: bool = False
    ) -> tuple[str | None, Literal["utf-8", "base64"]]:
        if value is None:
            return None, "utf-8"
        # a cut may split the last character: drop up to 3 trailing bytes to stay text
        for cut in range(4 if truncated else 1):
            try:
                return value[: len(value) - cut].decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                continue
        return base64.b64encode(value).decode("ascii"), "base64"

    def raw_bytes(self) -> bytes | None:
        """The original value, byte for byte (for replaying it)."""
        if self.raw_value is None:
            return None
        if self.raw_encoding == "base64":
            return base64.b64decode(self.raw_value)
        return self.raw_value.encode("utf-8")

    def wire_key(self) -> str:
        return self.key or self.task_id or ""

    def wire_headers(self) -> dict[str, str]:
        headers = {
            **super().wire_headers(),
            "reason": self.reason,
            "source_topic": self.source_topic,
        }
        if self.run_id:
            headers[H_RUN_ID] = self.run_id
        if self.attempt is not None:
            headers[H_ATTEMPT] = str(self.attempt)
        return headers


def dead_letter_for(
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: RawHeaders,
    role: str | None = None,
    worker: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    attempt: int | None = None,
    max_raw_bytes: int | None = None,
) -> DeadLetter:
    """A DeadLetter for a consumed record (identity given, or taken from its headers).

    A value longer than `max_raw_bytes` is kept only as its first `max_raw_bytes` bytes
    (`raw_truncated`, with `raw_size` the original size): a dead letter must stay publishable.
    """
    size = len(value) if value is not None else None
    truncated = value is not None and max_raw_bytes is not None and len(value) > max_raw_bytes
    kept = value[:max_raw_bytes] if truncated and value is not None else value
    raw, encoding = DeadLetter.encode_raw(kept, truncated=truncated)
    # key and headers are capped too (a record may be oversized by any part of it)
    hdrs = {name[:256]: text[:1024] for name, text in list(headers_dict(headers).items())[:64]}
    if attempt is None and hdrs.get(H_ATTEMPT, "").isdigit():
        attempt = int(hdrs[H_ATTEMPT])
    return DeadLetter.model_validate(
        {
            "reason": reason,
            "error": error,
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key[:1024].decode("utf-8", errors="replace") if key is not None else None,
            "headers": hdrs,
            "raw_value": raw,
            "raw_encoding": encoding,
            "raw_size": size,
            "raw_truncated": truncated,
            "role": role,
            "worker": worker,
            "task_id": task_id or hdrs.get(H_TASK_ID),
            "run_id": run_id or hdrs.get(H_RUN_ID),
            "attempt": attempt,
        }
    )
