"""The mesh's Kafka topics, which node reads which topic, and topic creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from graph.routing import CONSUMER, PRODUCER, REVIEWER, SANDBOX, SUPERVISOR

log = logging.getLogger(__name__)

AI_TOPIC = "ai_topic"
"""Tasks waiting for a solution (first attempts and retries with the sandbox's feedback)."""
AI_SOLUTIONS = "ai_solutions"
"""Candidate code from the consumer, waiting for the sandbox."""
AI_VERIFIED = "ai_verified_solutions"
"""Sandboxed solutions (passed, or out of attempts), waiting for the reviewer."""
AI_REVIEWS = "ai_reviews"
"""Reviews (reward + critique), waiting for the supervisor's audit."""
AI_TELEMETRY = "ai_telemetry"
"""One telemetry event per node step (the dashboard's feed)."""
AI_REPORTS = "ai_reports"
"""The supervisor's reports: one per finished task."""
AI_REQUESTS = "ai_requests"
"""Task requests for the producer."""
AI_DEAD_LETTER = "ai_dead_letter"
"""Malformed or poison messages, with the reason."""

ALL_TOPICS: tuple[str, ...] = (
    AI_REQUESTS,
    AI_TOPIC,
    AI_SOLUTIONS,
    AI_VERIFIED,
    AI_REVIEWS,
    AI_REPORTS,
    AI_TELEMETRY,
    AI_DEAD_LETTER,
)

END = "__end__"
"""`graph.routing.next_node` returns this after the supervisor (LangGraph's END)."""

INPUT_TOPIC: dict[str, str] = {
    PRODUCER: AI_REQUESTS,
    CONSUMER: AI_TOPIC,
    SANDBOX: AI_SOLUTIONS,
    REVIEWER: AI_VERIFIED,
    SUPERVISOR: AI_REVIEWS,
}
"""The topic each node's workers consume."""

DEFAULT_PARTITIONS = 4
"""Partitions per topic: the most workers per role that can share the load (tansu cannot add
partitions later, so pick it when the topics are first created)."""


def input_topic(role: str) -> str:
    """The topic a node's workers consume (ValueError for an unknown role)."""
    try:
        return INPUT_TOPIC[role]
    except KeyError:
        raise ValueError(
            f"unknown node {role!r}; expected one of {', '.join(INPUT_TOPIC)}"
        ) from None


def topic_for_transition(next_node: str) -> str:
    """The topic a transition travels on: the input topic of its destination node.

    "__end__" (after the supervisor) goes to `ai_reports`.
    """
    if next_node == END:
        return AI_REPORTS
    return input_topic(next_node)


def qualified(topic: str, prefix: str = "") -> str:
    """The topic's name on the broker: `prefix` + the mesh name (a prefix isolates deployments)."""
    return f"{prefix}{topic}"


def base_name(topic: str, prefix: str = "") -> str:
    """The mesh name of a broker topic (the inverse of `qualified`)."""
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def ensure_topics(
    admin: AdminClient,
    partitions: int = DEFAULT_PARTITIONS,
    *,
    prefix: str = "",
    topics: Iterable[str] = ALL_TOPICS,
    replication_factor: int = 1,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create the mesh's topics that do not exist yet; return the names created.

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
