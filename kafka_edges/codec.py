"""The wire format of every message: a pydantic model as a JSON value, a key and metadata headers;
decoding refuses what cannot be used, with a reason (the dead-letter reason)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

SCHEMA_VERSION = 1
"""Bumped on a breaking change; workers dead-letter versions they do not understand."""

Headers = list[tuple[str, str | bytes | None]]
RawHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None
M = TypeVar("M", bound="WireModel")

H_SCHEMA_VERSION = "schema_version"
H_MESSAGE_TYPE = "message_type"
H_RUN_ID = "run_id"
H_TASK_ID = "task_id"
H_ATTEMPT = "attempt"
H_SOURCE = "source"
H_ORIGIN = "origin"


def utc_now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class WireModel(BaseModel):
    """Base of everything the mesh puts on a topic."""

    model_config = ConfigDict(extra="ignore")

    TOPIC: ClassVar[str]
    TYPE: ClassVar[str]

    schema_version: int = SCHEMA_VERSION

    def wire_key(self) -> str:
        raise NotImplementedError

    def wire_headers(self) -> dict[str, str]:
        return {H_SCHEMA_VERSION: str(self.schema_version), H_MESSAGE_TYPE: self.TYPE}


@dataclass(frozen=True)
class WireRecord:
    """A message as it goes on the wire."""

    key: bytes
    value: bytes
    headers: Headers


def encode(message: WireModel, extra_headers: dict[str, str] | None = None) -> WireRecord:
    """JSON value, key = task id (run id before a task exists), metadata headers."""
    headers = {**message.wire_headers(), **(extra_headers or {})}
    return WireRecord(
        key=message.wire_key().encode("utf-8"),
        value=message.model_dump_json().encode("utf-8"),
        headers=[(k, v.encode("utf-8")) for k, v in headers.items()],
    )


def headers_dict(headers: RawHeaders) -> dict[str, str]:
    """Kafka headers as a str dict (later duplicates win; undecodable bytes are replaced)."""
    result: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for name, value in items:
        if isinstance(value, bytes):
            result[name] = value.decode("utf-8", errors="replace")
        else:
            result[name] = "" if value is None else value
    return result


class MessageDecodeError(ValueError):
    """A message that cannot be used: `reason` is the dead-letter reason, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(model: type[M], value: bytes | str | None) -> M:
    """Parse and validate one value as `model`; MessageDecodeError (with a reason) if unusable."""
    if value is None or len(value) == 0:
        raise MessageDecodeError("empty_value", "the message has no value")
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageDecodeError(
                "not_utf8", f"the value is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
    else:
        text = value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageDecodeError(
            "malformed_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise MessageDecodeError(
            "schema_invalid", f"expected a JSON object, got {type(data).__name__}"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MessageDecodeError(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported (this worker reads {SCHEMA_VERSION})",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MessageDecodeError("schema_invalid", _summarize_validation(model, exc)) from None


def _summarize_validation(model: type[BaseModel], exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"not a valid {model.__name__}: " + "; ".join(parts) + more
