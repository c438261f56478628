"""`aimesh run --distributed`: one worker process per node, tasks fed through Kafka, results read
back from the supervisors' reports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

from foundation.errors import InfrastructureError
from foundation.settings import WIRE_VARIABLE, Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.routing import NODES
from graph.state import MeshState, Task, TaskOutcome
from graph.topics import AI_REPORTS
from graph.wire import ReportMessage, read_mesh_topic
from kafka_edges.reader import Record
from llm.chat import resolve_provider
from llm.local_server import LocalModelServer
from memory.chroma_server import ChromaServer


class DistributedRunError(InfrastructureError):
    """The workers did not report every task in time."""


@contextlib.contextmanager
def shared_llm_endpoint(settings: Settings) -> Iterator[Settings]:
    """Settings whose LLM every worker process can share: one local model server, not five."""
    if resolve_provider(settings) != "local":
        yield settings
        return
    with LocalModelServer.from_settings(settings) as server:
        yield settings.model_copy(update={"llm": "openai", "llm_base_url": server.base_url})


@contextlib.contextmanager
def shared_memory_store(settings: Settings) -> Iterator[Settings]:
    """Settings whose memory every worker process can share: embedded Qdrant admits one
    process, so unless a shared store is configured already, a Chroma server is started."""
    memory = settings.memory
    if not memory.enabled or memory.backend == "chroma":
        yield settings
        return
    with ChromaServer(memory.resolved_dir(settings.data_dir) / "chroma") as server:
        shared = memory.model_copy(
            update={"backend": "chroma", "chroma_host": server.host, "chroma_port": server.port}
        )
        yield settings.model_copy(update={"memory": shared})


@contextlib.contextmanager
def worker_processes(settings: Settings, per_role: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start `aimesh worker --role R` for every node, sharing one memory store; stop them (and
    the store) on exit."""
    with contextlib.ExitStack() as stack:
        shared = stack.enter_context(shared_memory_store(settings))
        env = {**os.environ, WIRE_VARIABLE: shared.to_wire()}
        procs: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop_all, procs)
        command = [sys.executable, "-m", "app.cli.main", "worker", "--concurrency", str(per_role)]
        for role in NODES:
            procs.append(
                subprocess.Popen([*command, "--role", role], env=env, stdout=subprocess.DEVNULL)
            )
        yield procs


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_distributed(
    settings: Settings,
    tasks: list[Task | None],
    *,
    per_role: int = 1,
    timeout_s: float = 1800.0,
    on_report: Callable[[TaskOutcome], None] | None = None,
) -> list[TaskOutcome]:
    """Feed every task to the producer workers and collect one outcome per task."""
    with worker_processes(settings, per_role), KafkaEdgeSink(settings, origin="feed") as sink:
        runs = {
            sink.feed_request(
                MeshState(task_index=i, task=task, max_attempts=settings.max_attempts)
            ).run_id: i
            for i, task in enumerate(tasks)
        }
        outcomes: dict[str, TaskOutcome] = {}

        def collect(record: Record) -> bool:
            message = record.message
            if not isinstance(message, ReportMessage):
                return False
            if message.run_id in runs and message.run_id not in outcomes:
                state = message.state
                wall = state.report.wall_time_s if state.report else 0.0
                outcome = TaskOutcome.of(runs[message.run_id], state, seconds=wall)
                outcomes[message.run_id] = outcome
                if on_report is not None:
                    on_report(outcome)
            return len(outcomes) == len(runs)

        read_mesh_topic(AI_REPORTS, settings, timeout_s=timeout_s, until=collect)
    if len(outcomes) < len(runs):
        raise DistributedRunError(
            f"only {len(outcomes)} of {len(runs)} tasks were reported within {timeout_s:.0f}s"
        )
    return sorted(outcomes.values(), key=lambda o: o.index)
