"""`run --distributed` supervises its worker processes: a killed worker is restarted with one log
line; past the restart budget the run fails within seconds, naming the role and the exit status.

Bounded: scripted model, no memory, an embedded broker, loopback only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from app.distributed import (
    DistributedRunError,
    WorkerSupervisor,
    exit_status,
    partitions_for,
    run_distributed,
)
from foundation.settings import WIRE_VARIABLE, MemorySettings, Settings
from graph.topics import ALL_TOPICS
from kafka_edges.admin import ensure_topics
from kafka_edges.broker import EmbeddedBroker
from kafka_edges.config import common_config, topic_prefix, with_logger
from kafka_edges.ledger import DeliveryLedger

ROOT = Path(__file__).resolve().parents[2]
# Fast group joins and failure detection on tansu (see tests/kafka/conftest.py).
FAST_GROUPS = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"}


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def _settings(broker: EmbeddedBroker, tmp_path: Path, tag: str) -> Settings:
    return Settings(
        llm="scripted",
        data_dir=tmp_path / "data",
        kafka_bootstrap=broker.bootstrap,
        kafka_config=dict(FAST_GROUPS),
        kafka_group_prefix=f"test-{tag}",
        kafka_topic_prefix=f"{tag}.",
        memory=MemorySettings(enabled=False),
    )


def _wait(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False


def test_exit_status_reads_like_a_sentence() -> None:
    assert exit_status(3) == "exit code 3"
    assert exit_status(-signal.SIGKILL) == "killed by SIGKILL"
    assert partitions_for(1) == 4 and partitions_for(8) == 8


def test_a_killed_worker_is_restarted_with_one_log_line(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    lines: list[str] = []
    settings = _settings(broker, tmp_path, "restart")
    with WorkerSupervisor(
        settings, 2, roles=("consumer",), restart_budget=1, log=lines.append
    ) as supervisor:
        assert supervisor.wait_ready(timeout_s=90), "the workers never joined their group"
        victim = supervisor.pids["consumer"][0]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            supervisor.check()
            return victim not in supervisor.pids["consumer"]

        assert _wait(restarted, 10)
        assert len(supervisor.pids["consumer"]) == 2
        assert len(lines) == 1
        assert f"pid {victim}" in lines[0] and "killed by SIGKILL" in lines[0]
        assert "restart 1/1 for consumer" in lines[0]
        assert supervisor.wait_ready(timeout_s=90), "the restarted worker never joined"
        # the budget is used up: the next death fails the run at once, naming role and status
        os.kill(supervisor.pids["consumer"][1], signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(
            DistributedRunError, match=r"consumer worker died \(killed by SIGKILL\)"
        ):
            while time.monotonic() - started < 10:
                supervisor.check()
                time.sleep(0.1)
        assert time.monotonic() - started < 5


def test_a_run_fails_fast_when_a_role_keeps_dying(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role whose worker cannot start (here: the reviewer's settings are unreadable) ends the
    whole run in seconds with one line, instead of waiting for reports that will never come."""
    settings = _settings(broker, tmp_path, "budget")
    original = WorkerSupervisor._spawn

    def broken_reviewer(self: WorkerSupervisor, role: str, index: int) -> object:
        if role != "reviewer":
            return original(self, role, index)
        env, self._env = self._env, {**self._env, WIRE_VARIABLE: "{not json"}
        try:
            return original(self, role, index)
        finally:
            self._env = env

    monkeypatch.setattr(WorkerSupervisor, "_spawn", broken_reviewer)
    started = time.monotonic()
    with pytest.raises(DistributedRunError) as failure:
        run_distributed(settings, [None, None], per_role=1, restart_budget=1, timeout_s=120)
    message = str(failure.value)
    assert "reviewer worker died (exit code" in message and "restart budget (1)" in message
    assert time.monotonic() - started < 60


def test_every_task_is_reported_when_a_worker_is_killed_mid_run(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = _settings(broker, tmp_path, "midrun").model_copy(update={"scripted_delay_s": 0.3})
    lines: list[str] = []
    reported: list[int] = []
    killed: list[int] = []

    def on_report(outcome: object) -> None:
        reported.append(getattr(outcome, "index", -1))

    original_check = WorkerSupervisor.check

    def check_and_kill_once(self: WorkerSupervisor) -> None:
        if not killed and reported:
            killed.append(self.pids["consumer"][0])
            os.kill(killed[0], signal.SIGKILL)
        original_check(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WorkerSupervisor, "check", check_and_kill_once)
        patch.setattr("app.distributed._log", lines.append)
        outcomes = run_distributed(
            settings, [None] * 6, per_role=1, timeout_s=180, on_report=on_report
        )
    assert sorted(o.index for o in outcomes) == list(range(6))
    assert killed, "no worker was killed"
    assert any(f"pid {killed[0]}" in line and "restarted" in line for line in lines)


def test_a_distributed_run_survives_a_broker_restart_each_task_reported_once(
    tmp_path: Path,
) -> None:
    """`run --distributed` feeds through the delivery ledger: its own embedded broker is
    SIGKILLed mid-run and restarted on the same port (memory storage: every record, offset and
    group forgotten); the workers re-publish the runs in flight, and every task is in the
    results exactly once."""
    own = EmbeddedBroker().start()
    port = own.port
    settings = _settings(own, tmp_path, "broker-restart").model_copy(
        update={"scripted_delay_s": 0.2}
    )
    reported: list[int] = []
    restarted: list[float] = []
    original_check = WorkerSupervisor.check

    def check_and_restart_the_broker_once(self: WorkerSupervisor) -> None:
        nonlocal own
        if not restarted and len(reported) >= 2:
            os.kill(own.pid or 0, signal.SIGKILL)
            own.stop()
            own = EmbeddedBroker(port=port).start()
            admin = AdminClient(with_logger(common_config(settings)))
            ensure_topics(admin, ALL_TOPICS, partitions_for(1), prefix=topic_prefix(settings))
            restarted.append(time.monotonic())
        original_check(self)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(WorkerSupervisor, "check", check_and_restart_the_broker_once)
            outcomes = run_distributed(
                settings,
                [None] * 8,
                per_role=1,
                timeout_s=240,
                on_report=lambda outcome: reported.append(outcome.index),
            )
    finally:
        own.stop()
    assert restarted, "the broker was not restarted"
    assert sorted(o.index for o in outcomes) == list(range(8))
    assert sorted(reported) == list(range(8))  # each reported once
    with DeliveryLedger.for_settings(settings) as ledger:
        assert ledger.in_flight() == []  # every run fed through the ledger finished there
        assert ledger.processed_count("producer") == 8


def _aimesh_run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIMESH_DATA_DIR": str(data_dir),
        "AIMESH_MEMORY_ENABLED": "false",
        "AIMESH_KAFKA_CONFIG": json.dumps(FAST_GROUPS),
        "COLUMNS": "80",
    }
    env.pop("AIMESH_KAFKA_BOOTSTRAP", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", "run", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_the_distributed_run_says_its_batch_and_wall_time_stops_quietly_and_resumes(
    tmp_path: Path,
) -> None:
    done = _aimesh_run(tmp_path, "--distributed", "-n", "2", "--llm", "scripted")
    assert done.returncode == 0, done.stderr
    batch = re.findall(r"batch (distributed-\S+) \(resume: --resume \1\)", done.stdout)
    assert len(batch) == 1, done.stdout  # said once, before the workers start
    assert "starting worker processes" in done.stdout and "5/5" in done.stdout
    assert re.search(r"\d+\.\ds wall time", done.stdout), done.stdout
    assert "WARNING" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    task_ids = sorted(re.findall(r"^\d+\s+([0-9a-f]{12})\s", done.stdout, re.MULTILINE))
    assert len(task_ids) == 2, done.stdout

    # resumed, nothing is fed again: the runs it fed are read back (here all finished)
    again = _aimesh_run(tmp_path, "--resume", batch[0])
    assert again.returncode == 0, again.stderr
    assert sorted(re.findall(r"^\d+\s+([0-9a-f]{12})\s", again.stdout, re.MULTILINE)) == task_ids
