"""Skills: rules distilled from recurring failures and exemplars from rewarded solutions,
versioned in the registry, applied by the consumer, promoted through the validation gate."""

from __future__ import annotations

import dataclasses
from typing import Any

from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import MeshState, Task
from learning.candidates import MeshEvaluator
from learning.learner import Learner
from learning.rollouts import RolloutTrace, SpanRecord
from learning.skills import RULES, choose_exemplars, distill_rules
from llm.scripted import ScriptedChatModel
from nodes.consumer import consumer
from nodes.prompts import CONSUMER_EXEMPLARS, CONSUMER_RULES, SEED_PROMPTS
from prompt_registry.registry import PromptRegistry


def _trace(run: str, kinds: str = "", reward: float = 0.0, answer: str = "") -> RolloutTrace:
    task = Task(
        task_id=f"t-{run}", statement=f"Add two numbers ({run}).", signature="def add(a, b)",
        entry_point="add", tests=["assert add(1, 2) == 3"],
    )  # fmt: skip
    spans = [
        SpanRecord("llm.call", "llm", 0, 1, {"gen_ai.completion.0.content": answer}),
        SpanRecord("node.consumer", "node", 0, 1, {}),
        SpanRecord("node.sandbox", "node", 1, 2, {"aimesh.sandbox.error_types": kinds}),
    ]
    return RolloutTrace(run, "learn-train", 0.0, spans=spans, task=task, reward=reward)


def test_only_recurring_failures_pick_rules() -> None:
    traces = [_trace("1", "NameError"), _trace("2", "NameError,IndexError"), _trace("3", "Timeout")]
    assert distill_rules(traces) == f"- {RULES['NameError']}"
    assert distill_rules(traces[2:]) == ""


def test_exemplars_come_from_rewarded_runs() -> None:
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    traces = [_trace("1", reward=1.0, answer=good), _trace("2", reward=0.4, answer=good)]
    text = choose_exemplars(traces)
    assert text.startswith("Task: Add two numbers (1).") and "return a + b" in text
    assert "(2)" not in text


def test_the_consumer_applies_the_active_skills(scripted_services: MeshContext) -> None:
    prompts = {**SEED_PROMPTS, CONSUMER_RULES: dataclasses.replace(
        SEED_PROMPTS[CONSUMER_RULES], version="v0.1", text="- Import what you use."
    )}  # fmt: skip
    llm = ScriptedChatModel()
    context = dataclasses.replace(scripted_services, llm=llm, prompts=prompts)
    task = Task(statement="Return a + b.", signature="def add(a, b)", entry_point="add", tests=[])
    update = consumer(MeshState(task=task), Runtime(context=context))
    assert "Rules learned from earlier mistakes:\n- Import what you use." in llm.prompts_seen[-1]
    assert update["prompt_versions"][CONSUMER_RULES] == "v0.1"
    assert update["prompt_versions"][CONSUMER_EXEMPLARS] == "v0"


def test_a_skills_round_distils_rules_and_gates_them(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """The tricky training tasks fail their first attempt with AssertionError; its rule names
    edge cases, which the prompt-sensitive double answers better: a validation gain."""
    train, val = split
    evaluator.cache = True
    learner = Learner(evaluator, registry, train, val, alpha=1.0)  # 3 validation tasks: mechanics
    report = learner.run_round(CONSUMER_RULES, "skills")
    assert report.candidate == "v0.1", report
    assert RULES["AssertionError"] in registry.get(CONSUMER_RULES, "v0.1").text
    assert report.decision == "promoted", report
    assert (
        report.val_candidate is not None and report.val_candidate.reward > report.val_before.reward
    )
    again = learner.run_round(CONSUMER_RULES, "skills")
    assert again.decision in ("no-candidate", "rejected")
