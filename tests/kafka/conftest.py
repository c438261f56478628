"""Fixtures for the Kafka edge tests: one real embedded broker (tansu) for the session.

Each test gets its own topic prefix and consumer-group prefix (`mesh` fixture), so tests
share the broker without seeing each other's messages.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from foundation.settings import Settings
from graph.topics import ALL_TOPICS
from graph.wire import read_mesh_topic
from kafka_edges.admin import ensure_topics, qualified
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.config import common_config, with_logger
from kafka_edges.reader import Record

# the test doubles (kafka_stand_in) live next to the tests; pytest may use importlib mode
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# group joins on tansu take about session.timeout.ms / 2 (1 s minimum): 2 s keeps the suite
# fast and still detects a killed worker within about 2 s
TEST_KAFKA_CONFIG = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"}


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """A real tansu broker (memory storage) on a free port, shared by the session."""
    with EmbeddedBroker() as broker:
        yield broker


@dataclass
class Mesh:
    """A test's private corner of the shared broker."""

    broker: EmbeddedBroker
    settings: Settings
    prefix: str

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def topic(self, name: str) -> str:
        return qualified(name, self.prefix)

    def read(
        self, topic: str, count: int | None = None, *, timeout_s: float = 15.0, **kw: object
    ) -> list[Record]:
        return read_mesh_topic(
            topic, self.settings, count=count, timeout_s=timeout_s, prefix=self.prefix, **kw
        )  # type: ignore[arg-type]


@pytest.fixture
def mesh(kafka_broker: EmbeddedBroker, tmp_path: object) -> Mesh:
    """Settings pointing at the session broker, with this test's own topics and groups."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_config=dict(TEST_KAFKA_CONFIG),
        kafka_group_prefix=f"test-{tag}",
        llm="scripted",
        data_dir=Path(str(tmp_path)) / "data",
    )
    prefix = f"t{tag}."
    admin = AdminClient(with_logger(common_config(settings)))
    ensure_topics(admin, ALL_TOPICS, 2, prefix=prefix)
    return Mesh(kafka_broker, settings, prefix)
