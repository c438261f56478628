"""Both checkpointers restore the mesh's state types as themselves (registered with the serializer,
so LangGraph neither warns about them nor would block them), and refuse any other class."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.checkpoint import memory_checkpointer, sqlite_checkpointer
from graph.state import Attempt, BatchAudit, MeshState, Report, Review, ReviewScores, Task
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


@pytest.mark.parametrize("checkpointer", [_memory, sqlite_checkpointer], ids=["memory", "sqlite"])
def test_the_mesh_state_comes_back_as_itself(checkpointer, tmp_path: Path) -> None:
    with checkpointer(tmp_path / "checkpoints.db") as saver:
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
