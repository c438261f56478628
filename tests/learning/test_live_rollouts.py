"""Every live run records its rollout: the CLI's graph, and node workers (which run the same
steps one message at a time, possibly in several processes sharing the learning store)."""

from __future__ import annotations

from pathlib import Path

from app.services import recorded_step
from foundation.settings import MemorySettings, Settings
from graph.routing import END, ENTRY
from graph.state import MeshState, apply_update
from prompt_registry import LearningDB


def test_a_worker_step_records_llm_spans_and_the_reward(tmp_path: Path) -> None:
    settings = Settings(llm="scripted", data_dir=tmp_path, memory=MemorySettings(enabled=False))
    step = recorded_step(settings)
    state, node = MeshState(task_index=1), ENTRY
    while node != END:
        update, record = step(node, state)
        state, node = apply_update(state, update), record.next_node
    db = LearningDB.in_data_dir(tmp_path)
    [rollout] = db.query("SELECT * FROM rollouts")
    assert rollout["source"] == "worker" and rollout["reward"] == state.review.reward  # type: ignore[union-attr]
    kinds = {row["kind"]: row["n"] for row in db.query(
        "SELECT kind, COUNT(*) AS n FROM spans GROUP BY kind"
    )}  # fmt: skip
    assert kinds["llm"] >= 3 and kinds["node"] >= 5 and kinds["reward"] == 1
