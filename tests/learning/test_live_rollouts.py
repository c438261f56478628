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


def test_a_rollout_keeps_what_a_retry_may_see_and_no_hidden_test(tmp_path: Path) -> None:
    """Task 1 of the scripted double (reverse_words) fails its hidden test on `'hello'` first;
    the optimizers read the spans, so the hidden input must not be in them."""
    settings = Settings(llm="scripted", data_dir=tmp_path, memory=MemorySettings(enabled=False))
    step = recorded_step(settings)
    state, node = MeshState(task_index=1), ENTRY
    while node != END:
        update, record = step(node, state)
        state, node = apply_update(state, update), record.next_node
    assert state.task is not None and any("hello" in t for t in state.task.hidden_tests)
    assert len(state.attempts) == 2  # the retry happened
    rows = LearningDB.in_data_dir(tmp_path).query("SELECT * FROM spans ORDER BY seq")
    # the producer wrote every test itself (its call and step come first); the spans after it
    # (the consumer's calls, the sandbox's verdicts, the review) must not hold a hidden test
    after = [r["name"] for r in rows].index("node.producer") + 1
    text = " ".join(row["attributes"] for row in rows[after:])
    assert "Hidden tests: 0/1 passed" in text and "AssertionError" in text
    assert "hello" not in text
