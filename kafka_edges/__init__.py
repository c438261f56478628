"""Kafka edges: every graph transition as a message on a topic, and the nodes as group workers.

- `topics`     topic names, which node reads which topic, `ensure_topics`
- `messages`   wire schemas (one pydantic model per topic), `encode` / `decode`
- `config`     librdkafka configuration from Settings
- `broker`     the embedded tansu broker, `broker_for(settings)`, reachability checks
- `publisher`  `KafkaEdgeSink`: the graph's EdgeSink that publishes each step (confirmed)
- `worker`     `NodeWorker`: one node as a consumer-group worker (at-least-once, dead letters)
- `reader`     read a topic without joining a group (dashboards, tests, tools)
- `cli`        `aimesh broker`, `aimesh worker`, `aimesh feed`
"""

from kafka_edges.broker import (
    BrokerError,
    BrokerInfo,
    BrokerUnavailable,
    EmbeddedBroker,
    EmbeddedBrokerError,
    broker_for,
    check_reachable,
)
from kafka_edges.messages import (
    DeadLetter,
    EdgeMessage,
    MessageDecodeError,
    ReportMessage,
    ReviewMessage,
    SolutionMessage,
    TaskMessage,
    TaskRequest,
    TelemetryEvent,
    VerifiedSolutionMessage,
    decode,
    encode,
    message_for_step,
)
from kafka_edges.publisher import KafkaEdgeSink, PublishError
from kafka_edges.reader import TopicReader, read_topic
from kafka_edges.topics import INPUT_TOPIC, ensure_topics, input_topic, topic_for_transition
from kafka_edges.worker import MeshWorkers, NodeWorker, WorkerError

__all__ = [
    "INPUT_TOPIC",
    "BrokerError",
    "BrokerInfo",
    "BrokerUnavailable",
    "DeadLetter",
    "EdgeMessage",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "KafkaEdgeSink",
    "MeshWorkers",
    "MessageDecodeError",
    "NodeWorker",
    "PublishError",
    "ReportMessage",
    "ReviewMessage",
    "SolutionMessage",
    "TaskMessage",
    "TaskRequest",
    "TelemetryEvent",
    "TopicReader",
    "VerifiedSolutionMessage",
    "WorkerError",
    "broker_for",
    "check_reachable",
    "decode",
    "encode",
    "ensure_topics",
    "input_topic",
    "message_for_step",
    "read_topic",
    "topic_for_transition",
]
