"""The server's Kafka intake never drops a task: a run that fails to start is retried from the
same offset, and a crashed intake thread restarts (real embedded broker; the run starter is a
test double)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.server import TaskIntake
from foundation.settings import Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState, Task
from graph.topics import ALL_TOPICS
from graph.wire import ServerTaskMessage
from kafka_edges.broker import broker_for, free_port

pytestmark = pytest.mark.timeout(120)


class FlakyIntake(TaskIntake):
    """TEST DOUBLE run starter: the first `failures` starts raise, then runs are recorded."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, failures: int) -> None:
        super().__init__(settings, loop)
        self.failures = failures
        self.started: list[str] = []

    async def _start_run(self, message: ServerTaskMessage) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the server's API is not up yet")
        self.started.append(message.task_id)
        self.started_runs += 1


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _task(name: str) -> MeshState:
    return MeshState(
        task=Task(task_id=name, statement="s", signature="def f()", entry_point="f", tests=[])
    )


def test_a_run_that_fails_to_start_is_retried_and_nothing_is_skipped(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    with broker_for(Settings(data_dir=tmp_path), topics=ALL_TOPICS, partitions=1) as info:
        settings = info.settings.model_copy(update={"kafka_group_prefix": "intake-test"})
        intake = FlakyIntake(settings, loop, failures=2)
        intake.start()
        try:
            with KafkaEdgeSink(settings) as sink:
                for name in ("first", "second"):
                    sink.feed_server_task(_task(name))
            deadline = time.monotonic() + 60
            while len(intake.started) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            intake.stop()
    assert intake.started == ["first", "second"]
    assert intake.last_error is not None and "not up yet" in intake.last_error


def test_a_crashed_intake_thread_restarts(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    with broker_for(Settings(data_dir=tmp_path), topics=ALL_TOPICS, partitions=1) as info:
        intake = FlakyIntake(info.settings, loop, failures=0)
        crashes = {"left": 1}
        consume = intake._consume

        def crashing_once() -> None:
            if crashes["left"]:
                crashes["left"] -= 1
                raise RuntimeError("consumer blew up")
            consume()

        intake._consume = crashing_once  # type: ignore[method-assign]
        intake.start()
        try:
            with KafkaEdgeSink(info.settings) as sink:
                sink.feed_server_task(_task("after-crash"))
            deadline = time.monotonic() + 60
            while not intake.started and time.monotonic() < deadline:
                time.sleep(0.2)
            assert intake.alive
        finally:
            intake.stop()
    assert intake.restarts == 1 and "consumer blew up" in (intake.last_error or "")
    assert intake.started == ["after-crash"]


def test_an_unreachable_broker_is_one_readable_line_and_the_intake_keeps_trying(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    intake = FlakyIntake(settings, loop, failures=0)
    intake.start()
    try:
        deadline = time.monotonic() + 30
        while intake.restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert intake.alive and intake.restarts >= 2  # still trying
    finally:
        intake.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.server"]
    assert len(lines) == 1, lines  # once, not a line per retry
    assert lines[0].startswith("Kafka intake: cannot reach Kafka at 127.0.0.1:")
    assert "Traceback" not in caplog.text and intake.last_error is not None
