"""AgentMemory against real mem0, the real embedder and embedded Qdrant (no test doubles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memtest import (
    BINARY_SEARCH,
    BINARY_SEARCH_FAILED,
    BINARY_SEARCH_FIXED,
    BINARY_SEARCH_LIKE,
    FIBONACCI,
    FIBONACCI_CODE,
    FIBONACCI_LIKE,
    TIMEOUT_ERROR,
    UNRELATED,
)

from foundation.settings import Settings
from memory import (
    AgentMemory,
    AgentMemoryError,
    MemoryConfigError,
    MemorySettings,
    MemoryStoreBusyError,
    Recall,
)


def test_fix_recipe_is_recalled_for_a_similar_task_and_not_for_unrelated_ones(
    memory: AgentMemory,
) -> None:
    memory_id = memory.record_fix_recipe(
        BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED, task_id="t-bs"
    )
    assert memory_id

    recall = memory.recall(BINARY_SEARCH_LIKE)
    assert recall.hits == 1
    assert recall.best_practices == []
    [recipe] = recall.fix_recipes
    assert recipe.startswith(f"Fix recipe for task: {BINARY_SEARCH}")
    assert "exceeded the time limit" in recipe
    assert "-            lo = mid" in recipe and "+            lo = mid + 1" in recipe
    [record] = recall.records
    assert record.kind == "fix_recipe" and record.agent_id == "consumer"
    assert record.metadata["task_id"] == "t-bs"
    assert record.score is not None and record.score >= memory.settings.recall_threshold

    for statement in UNRELATED:
        unrelated = memory.recall(statement)
        assert unrelated.hits == 0, (statement, unrelated)
        assert unrelated.to_prompt() == ""


def test_recall_splits_kinds_and_caps_each_at_k(memory: AgentMemory) -> None:
    memory.record_best_practice(
        FIBONACCI, "Iterative, O(1) memory, clear names.", FIBONACCI_CODE, reward=0.92
    )
    for i in range(4):
        memory.record_fix_recipe(
            f"{FIBONACCI} Variant {i}.",
            "RecursionError: maximum recursion depth exceeded",
            "def fib(n):\n    return fib(n - 1) + fib(n - 2)",
            f"def fib(n):\n    a, b = 0, 1\n    for _ in range(n):  # {i}\n        a, b = b, a + b\n"
            "    return a",
        )
    memory.record_task("t-fib", "math", 2, FIBONACCI)  # a task is never recalled
    memory.record_failure(FIBONACCI, "RecursionError")  # nor is a bare failure

    recall = memory.recall(FIBONACCI_LIKE, k=2)
    assert len(recall.fix_recipes) == 2
    assert len(recall.best_practices) == 1
    assert recall.hits == 3
    assert recall.best_practices[0].startswith(f"Best practice for task: {FIBONACCI}")
    assert {r.kind for r in recall.records} == {"fix_recipe", "best_practice"}
    prompt = recall.to_prompt()
    assert "Fixes that worked on similar tasks:" in prompt
    assert "Practices the reviewer praised on similar tasks:" in prompt
    assert memory.recall(FIBONACCI_LIKE, k=0).hits == 0
    assert memory.recall("   ").hits == 0


def test_recall_on_an_empty_memory_is_empty(memory: AgentMemory) -> None:
    assert memory.recall(BINARY_SEARCH) == Recall()


def test_recording_is_idempotent(memory: AgentMemory) -> None:
    args = (BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED)
    first = memory.record_fix_recipe(*args)
    assert memory.record_fix_recipe(*args) == first
    practice = memory.record_best_practice(FIBONACCI, "Clear.", FIBONACCI_CODE)
    assert memory.record_best_practice(FIBONACCI, "Clear.", FIBONACCI_CODE) == practice
    task = memory.record_task("t-1", "search", 3, BINARY_SEARCH)
    assert memory.record_task("t-1", "search", 3, BINARY_SEARCH) == task
    assert memory.counts() == {"fix_recipe": 1, "best_practice": 1, "task": 1}
    assert len(memory.recall(BINARY_SEARCH).fix_recipes) == 1


def test_coverage_counts_tasks_and_max_difficulty_per_category(memory: AgentMemory) -> None:
    assert memory.coverage() == []
    tasks = [
        ("t1", "strings", 1, "Reverse a string."),
        ("t2", "strings", 4, "Find the longest palindromic substring."),
        ("t3", "math", 2, "Compute the greatest common divisor of two integers."),
        ("t4", "strings", 3, "Check whether two strings are anagrams."),
        ("t5", "graphs", 7, "Find the shortest path in a weighted graph."),
        ("t6", "math", 5, "Count the primes below n with a sieve."),
    ]
    for task_id, category, difficulty, statement in tasks:
        memory.record_task(task_id, category, difficulty, statement)
    memory.record_task("t2", "strings", 4, "Find the longest palindromic substring.")  # again
    memory.record_fix_recipe("Reverse a string.", "AssertionError", "x", "y")  # not a task

    assert memory.coverage() == [("graphs", 1, 7), ("math", 2, 5), ("strings", 3, 4)]
    [task] = memory.list(kind="task", limit=1)
    assert task.agent_id == "producer"
    assert task.metadata == {"kind": "task", "task_id": "t6", "category": "math", "difficulty": 5}
    assert task.text == "Task [math, difficulty 5]: Count the primes below n with a sieve."


def test_list_search_export_and_clear(memory: AgentMemory, tmp_path: Path) -> None:
    memory.record_task("t1", "search", 3, BINARY_SEARCH)
    memory.record_fix_recipe(
        BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED
    )
    memory.record_best_practice(FIBONACCI, "Iterative and clear.", FIBONACCI_CODE)
    memory.record_failure(FIBONACCI, "RecursionError: maximum recursion depth exceeded")

    listed = memory.list()
    assert [r.kind for r in listed] == ["failure", "best_practice", "fix_recipe", "task"]
    assert [r.kind for r in memory.list(limit=2)] == ["failure", "best_practice"]
    assert [r.kind for r in memory.list(kind="fix_recipe")] == ["fix_recipe"]
    assert all(r.score is None for r in listed)

    found = memory.search("fibonacci numbers", k=4)
    assert found[0].kind in ("best_practice", "failure")
    scores = [r.score for r in found]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert [r.kind for r in memory.search("fibonacci numbers", kind="task")] == ["task"]
    assert memory.search("fibonacci numbers", kind="task", min_score=0.9) == []
    with pytest.raises(ValueError, match="unknown memory kind"):
        memory.search("x", kind="bogus")  # type: ignore[arg-type]

    target = tmp_path / "out" / "memory.jsonl"
    assert memory.export(target) == 4
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["kind"] for row in rows] == ["task", "fix_recipe", "best_practice", "failure"]
    assert set(rows[0]) == {
        "id",
        "kind",
        "agent_id",
        "text",
        "metadata",
        "created_at",
        "updated_at",
    }
    assert rows[0]["metadata"]["category"] == "search"
    assert {row["agent_id"] for row in rows} == {"producer", "consumer"}

    assert memory.clear("failure") == 1
    assert memory.counts() == {"task": 1, "fix_recipe": 1, "best_practice": 1}
    assert memory.clear() == 3
    assert memory.count() == 0 and memory.list() == []
    assert memory.export(target) == 0 and target.read_text() == ""
    assert memory.clear() == 0


def test_namespaces_are_isolated(memory: AgentMemory) -> None:
    other = memory.namespaced(memory.namespace + "-other")
    memory.record_fix_recipe(
        BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED
    )
    other.record_task("t1", "search", 3, BINARY_SEARCH)
    assert memory.counts() == {"fix_recipe": 1}
    assert other.counts() == {"task": 1}
    assert other.recall(BINARY_SEARCH).hits == 0
    other.close()  # a view: the store stays open
    assert memory.count() == 1
    with pytest.raises(AgentMemoryError, match="closed"):
        other.count()


def test_infer_needs_an_llm_endpoint(tmp_path: Path) -> None:
    with pytest.raises(MemoryConfigError, match="AIMESH_LLM_BASE_URL"):
        AgentMemory.from_settings(
            Settings(data_dir=tmp_path, llm_base_url=None, memory=MemorySettings(infer=True))
        )


def test_embedded_store_admits_one_opener_and_is_released_by_close(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, memory=MemorySettings())
    first = AgentMemory.from_settings(settings)
    first.record_task("t1", "search", 3, BINARY_SEARCH)
    with pytest.raises(MemoryStoreBusyError, match="AIMESH_MEMORY_BACKEND=chroma"):
        AgentMemory.from_settings(settings)
    first.close()
    first.close()  # twice is fine
    with AgentMemory.from_settings(settings) as second:
        assert second.coverage() == [("search", 1, 3)]
    assert (tmp_path / "memory" / "qdrant").is_dir()
    assert (tmp_path / "memory" / "history.db").is_file()
