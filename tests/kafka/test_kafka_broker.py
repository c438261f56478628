"""The embedded broker, reachability checks, and readable errors for an unreachable broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from conftest import Mesh

from app.distributed import READY_LINE
from foundation.settings import WIRE_VARIABLE, MemorySettings, Settings
from graph.topics import ALL_TOPICS
from kafka_edges.broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    broker_for,
    check_reachable,
    free_port,
)
from kafka_edges.config import with_logger
from kafka_edges.errors import BrokerUnavailable

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]


def test_session_broker_answers_metadata(kafka_broker: EmbeddedBroker) -> None:
    assert kafka_broker.running
    assert check_reachable(kafka_broker.bootstrap, timeout_s=5) == 1


def test_broker_for_starts_an_embedded_broker_with_the_topics() -> None:
    settings = Settings(kafka_bootstrap=None)
    with broker_for(settings, topics=ALL_TOPICS, partitions=2) as info:
        assert info.embedded and info.broker is not None
        assert info.settings.kafka_bootstrap == info.bootstrap
        topics = (
            AdminClient(with_logger({"bootstrap.servers": info.bootstrap}))
            .list_topics(timeout=5)
            .topics
        )
        assert set(ALL_TOPICS) <= set(topics)
        assert len(topics["ai_topic"].partitions) == 2
        pid = info.broker.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:1", "no-such-host.invalid:9092"])
def test_unreachable_bootstrap_is_one_readable_error_in_bounded_time(bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=bootstrap)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught, broker_for(settings, timeout_s=3):
        pass
    assert time.monotonic() - started < 4
    message = str(caught.value)
    assert "\n" not in message and bootstrap in message
    assert "cannot reach Kafka" in message


def test_silent_port_times_out_within_the_bound() -> None:
    """A port that accepts TCP but never speaks Kafka (here: a plain listening socket)."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        bootstrap = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="did not answer a metadata request"):
            check_reachable(bootstrap, timeout_s=2)
        assert time.monotonic() - started < 3.5


def test_missing_binary_is_a_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMESH_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(
        EmbeddedBrokerError, match="AIMESH_TANSU_BIN=/nonexistent/tansu is not an executable"
    ):
        EmbeddedBroker().start()


def test_taken_port_is_a_readable_error() -> None:
    with EmbeddedBroker() as first:
        clash = EmbeddedBroker(port=first.port, startup_timeout_s=5)
        with pytest.raises(EmbeddedBrokerError, match=r"already in use|Address in use") as caught:
            clash.start()
        assert "\n" not in str(caught.value)
        assert not clash.running
        assert first.running


def test_broker_that_exits_at_start_reports_its_last_words(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text(
        "#!/bin/sh\necho 'tansu broker 0.0'\necho 'ERROR storage unavailable' >&2\nexit 3\n"
    )
    fake.chmod(0o755)
    with pytest.raises(EmbeddedBrokerError) as caught:
        EmbeddedBroker(binary=fake, startup_timeout_s=5).start()
    assert (
        str(caught.value)
        == "the embedded broker exited at start (code 3): ERROR storage unavailable"
    )


def test_cli_worker_with_unreachable_broker_prints_one_line() -> None:
    port = free_port()  # nothing listens there
    env = {**os.environ, "AIMESH_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.kafka", "worker", "--role", "consumer"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:")
    assert "Connection refused" in lines[0]
    assert elapsed < 15


def test_cli_broker_prints_its_bootstrap_and_stops_on_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.kafka", "broker", "--partitions", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "Kafka broker (embedded tansu, in memory) on 127.0.0.1:" in first
        export = process.stdout.readline().strip()
        bootstrap = export.split("=", 1)[1]
        assert check_reachable(bootstrap, timeout_s=5) == 1
        process.send_signal(2)
        assert process.wait(15) == 0
        with pytest.raises(BrokerUnavailable):
            check_reachable(bootstrap, timeout_s=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_worker_role_all_prints_the_ready_line(mesh: Mesh) -> None:
    settings = mesh.settings.model_copy(
        update={"kafka_topic_prefix": mesh.prefix, "memory": MemorySettings(enabled=False)}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "worker", "--role", "all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, WIRE_VARIABLE: settings.to_wire()},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert lines[0].startswith("workers for producer, consumer, sandbox"), lines
        assert lines[1] == READY_LINE
        process.send_signal(2)
        assert process.wait(30) in (0, 130)  # stopped by Ctrl-C
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
