"""Run batches of tasks through the compiled graph with a checkpointer, resumably."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.builder import MeshGraph
from graph.context import MeshContext
from graph.state import MeshState, Task, TaskOutcome

NodeCallback = Callable[[int, str], None]


class BatchRunner:
    """Runs task i of a batch on thread `<batch>-<i>`; a rerun of the batch resumes unfinished
    tasks from their last checkpoint and skips finished ones."""

    def __init__(self, graph: MeshGraph, context: MeshContext, batch_id: str | None = None) -> None:
        self.graph = graph
        self.context = context
        self.batch_id = batch_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def run_task(
        self,
        index: int,
        task: Task | None = None,
        max_attempts: int | None = None,
        on_node: NodeCallback | None = None,
        **fields: Any,
    ) -> TaskOutcome:
        """Run (or resume, or just read back) task `index` of the batch; `fields` are further
        initial state (e.g. `feedback`, earlier `attempts`)."""
        config = self._config(index)
        snapshot = self.graph.get_state(config)
        started = time.perf_counter()
        if snapshot.values and not snapshot.next:  # finished earlier: read it back
            state = MeshState.model_validate(snapshot.values)
            return TaskOutcome.of(
                index, state, seconds=state.report.wall_time_s if state.report else 0
            )
        payload: Any = None
        if not snapshot.values:
            payload = MeshState(
                task_index=index,
                task=task,
                max_attempts=max_attempts or self.context.settings.max_attempts,
                **fields,
            )
        for update in self.graph.stream(
            payload, config, context=self.context, stream_mode="updates"
        ):
            for node in update:
                if on_node is not None:
                    on_node(index, node)
        state = MeshState.model_validate(self.graph.get_state(config).values)
        return TaskOutcome.of(index, state, seconds=time.perf_counter() - started)

    def state_of(self, index: int) -> MeshState:
        """The current (or final) state of task `index` of the batch."""
        return MeshState.model_validate(self.graph.get_state(self._config(index)).values)

    def _config(self, index: int) -> RunnableConfig:
        return {"configurable": {"thread_id": f"{self.batch_id}-{index}"}}


def write_manifest(path: Path, **fields: Any) -> None:
    """Record how a batch was started, so that `--resume` can rerun it identically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields, indent=2, default=str))


def read_manifest(path: Path) -> dict[str, Any]:
    """The recorded arguments of a batch."""
    if not path.exists():
        raise FileNotFoundError(f"no batch manifest at {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
