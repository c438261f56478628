"""Topic administration: deployment prefixes and creating the topics a mesh needs."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
"""Partitions per topic: the most workers per role that can share the load (tansu cannot add
partitions later, so pick it when the topics are first created)."""


def qualified(topic: str, prefix: str = "") -> str:
    """The topic's name on the broker: `prefix` + the mesh name (a prefix isolates deployments)."""
    return f"{prefix}{topic}"


def base_name(topic: str, prefix: str = "") -> str:
    """The mesh name of a broker topic (the inverse of `qualified`)."""
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def ensure_topics(
    admin: AdminClient,
    topics: Iterable[str],
    partitions: int = DEFAULT_PARTITIONS,
    *,
    prefix: str = "",
    replication_factor: int = 1,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create those of `topics` that do not exist yet; return the names created.

    Existing topics are left alone (their partition count is not changed). A broker that
    refuses creation for lack of permission is logged, not raised: an operator may have
    created the topics already.
    """
    wanted = [qualified(t, prefix) for t in topics]
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
            for t in missing
        ],
        request_timeout=timeout_s,
    )
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if code in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            ):
                log.warning(
                    "not allowed to create topic %s (%s); assuming it is managed elsewhere",
                    name,
                    error,
                )
                continue
            raise
    return created
