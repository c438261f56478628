"""APO from the REAL agent-lightning (0.3) over the real graph: rewards reach the LightningStore and
the SQLite file, an improving prompt is promoted and read by the next run, rollback restores the
previous version, and a non-improving candidate is rejected.

The mesh's LLM is the prompt-sensitive scripted double; APO's gradient/edit LLM is the in-memory
`OptimizerDouble` endpoint (see conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.state import MeshState, Task
from learning.apo_options import APOOptions
from learning.candidates import MeshEvaluator
from learning.learner import Learner, OptimizerLLM
from nodes import NODE_FUNCTIONS
from nodes.prompts import CONSUMER_SYSTEM
from prompt_registry.registry import PromptRegistry

C = CONSUMER_SYSTEM
pytestmark = pytest.mark.timeout(300)


def _optimizer(double: Any) -> OptimizerLLM:
    return OptimizerLLM(
        "http://optimizer-double.invalid/v1", "double", async_client=double.client()
    )


def _run(services: MeshContext, task: dict[str, Any]) -> MeshState:
    graph = compile_mesh(NODE_FUNCTIONS, InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "next-run"}}
    state = MeshState(task=Task.model_validate(task), max_attempts=1)
    return MeshState.model_validate(graph.invoke(state, config, context=services))


def test_apo_promotes_an_improving_prompt_rewards_reach_the_store_and_rollback_works(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    sensitive_services: MeshContext,
    optimizer_double: Any,
) -> None:
    train, val = split
    seed = registry.current(C)
    improved = seed.text + "\nCheck the edge cases of the task before you answer."
    double = optimizer_double(improved)
    # the mechanics: a gain on one validation task of three cannot be significant, so alpha=1
    learner = Learner(evaluator, registry, train, val, optimizer=_optimizer(double), alpha=1.0)

    report = learner.run_round(C, "apo")

    assert {"gradient", "edit"} <= set(double.kinds)
    assert report.decision == "promoted", report
    assert report.val_candidate is not None
    assert report.val_candidate.reward > report.val_before.reward
    assert report.val_candidate.pass_rate == 1.0 > report.val_before.pass_rate
    promoted = registry.current(C)
    assert promoted.text == improved and promoted.version == report.candidate == "v1.1"
    assert registry.get(C, "v1").status == "retired"
    assert registry.get(C, promoted.version).source == "apo"
    stats = registry.get(C, promoted.version)  # its validation rewards (every APO pass), adopted
    assert stats.n >= len(val) and stats.n % len(val) == 0 and stats.mean == 1.0

    # Rewards reached agent-lightning's store: every rollout has a final reward span ...
    from learning.lightning import store_rewards

    result = learner.last_apo
    in_store = asyncio.run(store_rewards(result.store))
    assert len(in_store) >= len(train) + 2 * len(val)
    assert {mode for _, mode, _ in in_store} == {"train", "val"}
    assert all(reward is not None for _, _, reward in in_store)
    # ... with the node and LLM spans of the graph run ...
    first = in_store[0][0]
    names = [s.name for s in asyncio.run(result.store.query_spans(first))]
    assert {"node.producer", "llm.consumer", "node.sandbox", "node.supervisor"} <= set(names)
    # ... and the same rollouts (and rewards) are in the learning SQLite file.
    rows = {
        r["agl_rollout_id"]: r
        for r in registry.db.query("SELECT * FROM rollouts WHERE agl_rollout_id IS NOT NULL")
    }
    for rollout_id, mode, reward in in_store:
        assert rows[rollout_id]["reward"] == pytest.approx(reward)
        assert rows[rollout_id]["source"] == f"learn-{mode}"
    assert registry.db.query("SELECT COUNT(*) AS n FROM spans")[0]["n"] > 5 * len(in_store)

    # The next run reads the promoted version from the registry.
    tricky = val[2]["task"]  # fib: wrong on the first attempt unless the prompt says "edge cases"
    services = dataclasses.replace(sensitive_services, prompts=registry.current_all())
    state = _run(services, tricky)
    assert state.prompt_versions[C] == promoted.version
    assert improved in type(services.llm).seen  # type: ignore[attr-defined]
    assert state.passed

    # Rollback re-activates the previous version, and the next run uses it again.
    assert registry.rollback(C).version == "v1"
    services = dataclasses.replace(sensitive_services, prompts=registry.current_all())
    state = _run(services, tricky)
    assert state.prompt_versions[C] == "v1" and not state.passed
    assert registry.get(C, promoted.version).status == "rejected"


def test_the_textual_gradient_reads_the_training_tasks_the_prompt_fails(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    optimizer_double: Any,
) -> None:
    train, val = split  # with the seed prompt: add passes, reverse_words and merge_intervals fail
    evaluator.cache = True
    double = optimizer_double("Check the edge cases of the task before you answer.")
    learner = Learner(
        evaluator, registry, train, val, optimizer=_optimizer(double),
        apo=APOOptions(gradient_batch_size=2, branch_factor=1),
    )  # fmt: skip

    report = learner.run_round(C, "apo")

    assert report.detail["gradient_items"] == ["cat-reverse_words", "cat-merge_intervals"]
    gradients = [json.dumps(r["messages"]) for r in double.requests if "Revise the" not in
                 json.dumps(r["messages"])]  # fmt: skip
    assert gradients and all("reverse_words" in g or "merge_intervals" in g for g in gradients)
    assert not any("def add(" in g for g in gradients)


def test_a_non_improving_candidate_is_kept_as_rejected(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    optimizer_double: Any,
) -> None:
    train, val = split
    evaluator.cache = True  # the scripted double is deterministic
    same_behaviour = "You write Python functions. Reply with one ```python block only."
    learner = Learner(
        evaluator, registry, train, val, optimizer=_optimizer(optimizer_double(same_behaviour))
    )

    report = learner.run_round(C, "apo")

    assert report.decision == "rejected", report
    assert report.val_candidate is not None
    assert report.val_candidate.reward <= report.val_before.reward
    assert registry.current(C).version == "v1"
    rejected = registry.get(C, report.candidate or "?")
    assert rejected.status == "rejected" and rejected.text == same_behaviour
    assert "validation reward" in registry.events(C)[-1].detail
    assert report.cache_hits > 0


def test_an_edit_that_is_code_not_a_prompt_is_dropped_before_validation(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    optimizer_double: Any,
) -> None:
    from learning.lightning import clean_prompt

    code = "```python\ndef fib(n: int) -> int:\n    return n\n```"
    assert clean_prompt(code) is None
    assert (
        clean_prompt("Revised prompt:\nWrite correct Python code.") == "Write correct Python code."
    )
    train, val = split
    evaluator.cache = True
    double = optimizer_double(code)
    learner = Learner(evaluator, registry, train, val, optimizer=_optimizer(double))

    report = learner.run_round(C, "apo")

    assert report.decision == "no-candidate" and report.active_after == "v1"
    assert len(report.detail["invalid_edits"]) == 2 * 2  # 2 branches x 2 attempts
    assert [v.version for v in registry.history(C)] == ["v1"]


def test_a_gain_that_is_not_significant_is_not_promoted(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    optimizer_double: Any,
) -> None:
    """The same improving edit as above, at the default alpha (0.05): one better task of three
    is a sign test p of 0.5, so the candidate is kept as rejected, with the p-value."""
    train, val = split
    improved = registry.current(C).text + "\nCheck the edge cases of the task before you answer."
    learner = Learner(
        evaluator, registry, train, val, optimizer=_optimizer(optimizer_double(improved))
    )
    report = learner.run_round(C, "apo")
    assert report.decision == "rejected", report
    assert report.val_candidate is not None
    assert report.val_candidate.reward > report.val_before.reward  # a gain, but not significant
    assert registry.current(C).version == "v1"
    [event] = [e for e in registry.events(C) if e.event == "rejected"]
    assert "paired sign test p=0.500" in event.detail


def test_an_edit_naming_a_training_task_is_refused_with_its_reason(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    optimizer_double: Any,
) -> None:
    train, val = split
    evaluator.cache = True
    leaking = "Check the edge cases. For merge_intervals, sort the intervals first."
    learner = Learner(
        evaluator, registry, train, val, optimizer=_optimizer(optimizer_double(leaking)),
        alpha=1.0,
    )  # fmt: skip

    report = learner.run_round(C, "apo")

    assert report.decision == "no-candidate" and registry.current(C).version == "v1"
    [(version, reason)] = report.detail["refused"].items()
    assert "merge_intervals" in reason
    refused = registry.get(C, version)
    assert refused.status == "rejected" and refused.text == leaking
