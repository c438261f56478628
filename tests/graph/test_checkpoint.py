"""The checkpointers restore the mesh's state types as themselves (registered with the serializer,
so LangGraph neither warns about them nor would block them), and refuse any other class; the
Postgres one (AIMESH_DATABASE_URL) rides through a restart of its server mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver

from app.services import build_context
from foundation.postgres_server import PostgresMissing, ThrowAwayPostgres
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.checkpoint import durable_checkpointer, memory_checkpointer, sqlite_checkpointer
from graph.edges import StepRecord
from graph.runner import BatchRunner
from graph.state import Attempt, BatchAudit, MeshState, Report, Review, ReviewScores, Task
from nodes import NODE_FUNCTIONS
from sandbox.base import ExecutionResult, TestFailure


@contextmanager
def _memory(_: Path) -> Iterator[BaseCheckpointSaver]:
    yield memory_checkpointer()


STATE = MeshState(
    task=Task(statement="Add.", signature="def add(a, b)", entry_point="add", tests=["assert 1"]),
    attempts=[
        Attempt(
            number=1,
            code="def add(a, b): return a - b",
            execution=ExecutionResult(
                passed=False,
                failures=[TestFailure(test="assert add(1, 1) == 2", error_type="AssertionError")],
            ),
        )
    ],
    review=Review(reward=0.2, scores=ReviewScores(correctness=0.0), critique="wrong sign"),
    report=Report(verdict="warn", summary="unsolved"),
)


@contextmanager
def _postgres(url: str) -> Iterator[BaseCheckpointSaver]:
    with durable_checkpointer(Settings(database_url=url)) as saver:
        yield saver


@pytest.mark.parametrize(
    "checkpointer", [_memory, sqlite_checkpointer, _postgres], ids=["memory", "sqlite", "postgres"]
)
def test_the_mesh_state_comes_back_as_itself(
    checkpointer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = tmp_path / "checkpoints.db"
    with checkpointer(
        request.getfixturevalue("postgres_url") if checkpointer is _postgres else where
    ) as saver:
        fields = {name: getattr(STATE, name) for name in ("task", "attempts", "review", "report")}
        restored = {
            k: saver.serde.loads_typed(saver.serde.dumps_typed(v)) for k, v in fields.items()
        }
        assert restored == fields
        assert isinstance(restored["attempts"][0].execution.failures[0], TestFailure)
        # a class the mesh did not register is not rebuilt from a checkpoint
        other = BatchAudit(
            batch_id="b", tasks=1, pass_rate=1.0, mean_reward=1.0, reward_trend=0.0,
            tokens_used=0, wall_time_s=0.0, anomalies=[], verdict="ok", summary="",
        )  # fmt: skip
        assert not isinstance(saver.serde.loads_typed(saver.serde.dumps_typed(other)), BatchAudit)


class RestartAfterConsumer:
    """An EdgeSink that restarts the Postgres server once, after the first consumer step."""

    def __init__(self, server: ThrowAwayPostgres) -> None:
        self.server = server
        self.restarts = 0

    def on_step(self, step: StepRecord) -> None:
        if step.node == "consumer" and not self.restarts:
            self.server.restart()
            self.restarts += 1


def test_a_run_checkpointed_in_postgres_rides_through_a_restart(tmp_path: Path) -> None:
    try:
        server = ThrowAwayPostgres()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    with server:
        settings = Settings(
            llm="scripted", data_dir=tmp_path, database_url=server.new_database("mesh")
        )
        services = build_context(settings, use_memory=False)
        restarter = RestartAfterConsumer(server)
        with durable_checkpointer(settings) as saver:
            graph = compile_mesh(NODE_FUNCTIONS, saver, edge_sink=restarter)
            outcome = BatchRunner(graph, services, batch_id="b").run_task(0)
        assert restarter.restarts == 1 and outcome.passed
        # another process (or host) reads the finished run back from the same database
        with durable_checkpointer(settings) as saver:
            runner = BatchRunner(compile_mesh(NODE_FUNCTIONS, saver), services, batch_id="b")
            again = runner.run_task(0)
        assert (again.task_id, again.passed, again.reward) == (
            outcome.task_id,
            True,
            outcome.reward,
        )
        assert not (tmp_path / "checkpoints.sqlite").exists()
