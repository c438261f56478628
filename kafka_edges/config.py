"""librdkafka configuration built from the mesh's Settings.

Precedence, lowest first: the defaults below, `settings.kafka_config` (SASL/SSL and any other
librdkafka property, passed through as given), then explicit `overrides` from the caller.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from foundation.settings import Settings
from kafka_edges.errors import BrokerError

CONSUMER_DEFAULTS: dict[str, Any] = {
    # tansu makes a joining member wait about session.timeout.ms / 2 (23 s with librdkafka's
    # 45 s default); 6 s keeps joins at about 3 s and still tolerates a busy host.
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    # fetch latency is about fetch.wait.max.ms / 2 on tansu (0 hangs)
    "fetch.wait.max.ms": 10,
    # offsets are committed by hand, after the step's output is confirmed on the broker
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    # a node may legitimately run for minutes (a local model, a slow sandbox); past this the
    # member is considered stuck and its partitions move to another worker
    "max.poll.interval.ms": 900_000,
    "partition.assignment.strategy": "cooperative-sticky",
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    # Java-client compatible key hashing, so every client puts a task id on the same partition
    "partitioner": "murmur2_random",
    "linger.ms": 2,
    # delivery reports arrive (success or failure) within this bound; see KafkaEdgeSink
    "message.timeout.ms": 10_000,
}

_LIBRDKAFKA_LOG = logging.getLogger("kafka_edges.librdkafka")


class _LibrdkafkaLog:
    """librdkafka's own log lines, demoted to DEBUG on `kafka_edges.librdkafka`.

    Without a logger librdkafka prints every failed connection attempt to stderr; the mesh
    reports broker problems itself, as one readable error.
    """

    def log(self, level: int, msg: str, *args: Any) -> None:
        _LIBRDKAFKA_LOG.debug(msg, *args)


LIBRDKAFKA_LOGGER = _LibrdkafkaLog()


def client_id(role: str) -> str:
    """A client id that names the role, host and process (shows up in broker logs)."""
    return f"aimesh-{role}-{socket.gethostname()}-{os.getpid()}"


def require_bootstrap(settings: Settings, bootstrap: str | None = None) -> str:
    """The bootstrap servers to use; a readable error when none is configured."""
    value = bootstrap or settings.kafka_bootstrap
    if not value:
        raise BrokerError(
            "no Kafka bootstrap servers configured: set AIMESH_KAFKA_BOOTSTRAP "
            "(or start one with `aimesh broker`)"
        )
    return value


def _merge(
    defaults: Mapping[str, Any],
    settings: Settings,
    bootstrap: str | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    conf: dict[str, Any] = dict(defaults)
    conf["bootstrap.servers"] = require_bootstrap(settings, bootstrap)
    conf.update(settings.kafka_config)
    if overrides:
        conf.update(overrides)
    return conf


def common_config(
    settings: Settings, *, bootstrap: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Bootstrap servers plus the `kafka_config` passthrough (for admin clients)."""
    return _merge({}, settings, bootstrap, overrides)


def producer_config(
    settings: Settings,
    *,
    bootstrap: str | None = None,
    client: str = "edges",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An idempotent, acks=all producer."""
    return _merge(
        {**PRODUCER_DEFAULTS, "client.id": client_id(client)}, settings, bootstrap, overrides
    )


def consumer_config(
    settings: Settings,
    group_id: str,
    *,
    bootstrap: str | None = None,
    client: str = "worker",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A manual-commit group consumer tuned for fast joins (see CONSUMER_DEFAULTS)."""
    defaults = {**CONSUMER_DEFAULTS, "group.id": group_id, "client.id": client_id(client)}
    return _merge(defaults, settings, bootstrap, overrides)


def group_id(settings: Settings, role: str) -> str:
    """The consumer group of a role's workers: `<kafka_group_prefix>-<role>`."""
    return f"{settings.kafka_group_prefix}-{role}"


def topic_prefix(settings: Settings, explicit: str | None = None) -> str:
    """The topic-name prefix: `explicit` if given, else the `kafka_topic_prefix` setting."""
    return explicit if explicit is not None else settings.kafka_topic_prefix


def with_logger(conf: dict[str, Any]) -> dict[str, Any]:
    """`conf` plus the logger that keeps librdkafka's connection noise off stderr."""
    return {**conf, "logger": LIBRDKAFKA_LOGGER}
