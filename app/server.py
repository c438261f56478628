"""The LangGraph server's http app (langgraph.json "http"): the live dashboard, and a Kafka intake
that turns every task published to `ai_server_tasks` by any client into a run on this server.

The intake is a consumer-group member (`<group prefix>-server`): it decodes each record, starts a
run for each task on a thread derived from the task's run id (a redelivered record finds its run
already there), and commits only after the run was created. A run that fails to start is retried
with backoff from the same offset (nothing behind it is committed first); malformed records go to
the dead-letter topic with the reason. A crashed intake thread is restarted, and
`/aimesh/health` says so. The node workers never read `ai_server_tasks`, so a task published
once runs once whichever of the server and the workers are attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator

from confluent_kafka import Consumer, Message, TopicPartition
from fastapi import FastAPI

from dashboard.app import include_dashboard
from foundation.backoff import Backoff
from foundation.langsmith import configure_tracing
from foundation.settings import Settings
from graph.builder import GRAPH_NAME
from graph.kafka_sink import KafkaEdgeSink
from graph.topics import AI_SERVER_TASKS, ALL_TOPICS
from graph.wire import ServerTaskMessage
from kafka_edges.admin import qualified
from kafka_edges.broker import broker_for
from kafka_edges.codec import MessageDecodeError, decode
from kafka_edges.config import consumer_config, group_id, topic_prefix, with_logger
from kafka_edges.dead_letters import dead_letter_for
from kafka_edges.errors import BrokerError

log = logging.getLogger(__name__)
RUN_NAMESPACE = uuid.UUID("6f1d3c52-7a0e-4d8e-9a43-5b8f7f0f2a11")


def thread_id_for(run_id: str) -> str:
    """The server thread that hosts the run of a task (stable across redeliveries)."""
    return str(uuid.uuid5(RUN_NAMESPACE, run_id))


class TaskIntake:
    """Consumes `ai_server_tasks` in a background thread and starts a server run per task."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.topic = qualified(AI_SERVER_TASKS, topic_prefix(settings))
        self.started_runs = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="aimesh-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _supervise(self) -> None:
        """Run the consume loop; restart it (with backoff) whenever it dies. A failure is logged
        as one line, once until it changes (an unreachable broker is not a line per retry)."""
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._consume()
            except BrokerError as exc:  # unreachable: its message says where and why
                self._failed(str(exc), backoff)
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}", backoff)

    def _failed(self, error: str, backoff: Backoff) -> None:
        self.restarts += 1
        if error != self.last_error:
            log.error("Kafka intake: %s; retrying until it answers", error)
        self.last_error = error
        self._stop.wait(backoff.next())

    def _consume(self) -> None:
        # the broker answers, and the topics exist (created if missing), before the consumer
        with broker_for(self.settings, topics=ALL_TOPICS, topic_prefix=topic_prefix(self.settings)):
            pass
        conf = consumer_config(self.settings, group_id(self.settings, "server"), client="server")
        consumer = Consumer(with_logger(conf))
        consumer.subscribe([self.topic])
        backoff = Backoff()
        try:
            with KafkaEdgeSink(self.settings, client="server-dlq") as dead_letters:
                while not self._stop.is_set():
                    record = consumer.poll(0.2)
                    if record is None or record.error():
                        continue
                    if self._handle(record, dead_letters):
                        consumer.commit(message=record, asynchronous=False)
                        backoff.reset()
                        continue
                    # not started: read this record again after a pause, commit nothing past it
                    partition, offset = record.partition() or 0, record.offset() or 0
                    consumer.seek(TopicPartition(self.topic, partition, offset))
                    self._stop.wait(backoff.next())
        finally:
            consumer.close()

    def _handle(self, record: Message, dead_letters: KafkaEdgeSink) -> bool:
        """True when the record is dealt with (run started, skipped, or dead-lettered)."""
        try:
            message = decode(ServerTaskMessage, record.value())
        except MessageDecodeError as exc:
            dead_letters.send_dead_letter(
                dead_letter_for(
                    reason=exc.reason, error=exc.detail, topic=record.topic() or self.topic,
                    partition=record.partition(), offset=record.offset(), key=record.key(),
                    value=record.value(), headers=record.headers(), role="server",
                )
            )  # fmt: skip
            return True
        future = asyncio.run_coroutine_threadsafe(self._start_run(message), self.loop)
        try:
            future.result(timeout=60)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not start a run for task %s (%s); retrying", message.task_id, exc)
            return False
        return True

    async def _start_run(self, message: ServerTaskMessage) -> None:
        from langgraph_sdk import get_client

        client = get_client(url=None)
        thread_id = thread_id_for(message.run_id)
        await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
        if await client.runs.list(thread_id, limit=1):
            return  # redelivered: this task's run exists already
        payload = message.state.model_dump(mode="json", exclude_none=True)
        await client.runs.create(thread_id, GRAPH_NAME, input=payload)
        self.started_runs += 1


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Attach the Kafka intake when a broker is configured (AIMESH_KAFKA_BOOTSTRAP; `aimesh
    server` starts one). An unreachable broker does not stop the server: the intake says so in
    one line and keeps trying (`/aimesh/health` shows its last error)."""
    configure_tracing()
    settings = Settings.load()
    if not settings.kafka_bootstrap:
        log.warning(
            "AIMESH_KAFKA_BOOTSTRAP is not set: no Kafka intake on this server "
            "(`aimesh server` starts a broker and attaches it)"
        )
        yield
        return
    intake = TaskIntake(settings, asyncio.get_running_loop())
    app.state.intake = intake
    intake.start()
    try:
        yield
    finally:
        intake.stop()


app = FastAPI(title="AI-Mesh", lifespan=lifespan)
include_dashboard(app, "/dashboard")


@app.get("/aimesh/health")
def health() -> dict[str, object]:
    """Whether the Kafka intake is attached and running, its broker and topic prefix, how many
    runs it started, and its restarts and last error."""
    intake: TaskIntake | None = getattr(app.state, "intake", None)
    if intake is None:
        return {"intake": False, "alive": False, "started_runs": 0, "restarts": 0}
    return {
        "intake": intake.alive,
        "bootstrap": intake.settings.kafka_bootstrap,  # where `aimesh feed --server URL` sends
        "topic_prefix": intake.settings.kafka_topic_prefix,
        "alive": intake.alive,
        "started_runs": intake.started_runs,
        "restarts": intake.restarts,
        "last_error": intake.last_error,
    }
