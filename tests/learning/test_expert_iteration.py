"""Expert iteration: the agent-lightning algorithm samples K answers per training task through the
real graph and reads the verified ones back through its adapter; a proposed adapter is promoted
only through the validation gate, reaches the consumer's requests, and rolls back.

TEST DOUBLES here: `AdapterSensitiveChatModel` (the scripted double, which gets the tricky tasks
right when a request applies the adapter named "good") and `WeightsDouble` (proposes a prepared
adapter name instead of sampling and training; the real training is tested against the real
model in `test_lora_training.py`)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from app.services import build_context
from foundation.settings import Settings
from graph.context import MeshContext
from graph.state import Task
from learning.candidates import MeshEvaluator, TaskItem, task_items
from learning.expert_iteration import ExpertIterationOptions, sample_round
from learning.learner import Learner
from llm.scripted import ScriptedChatModel
from nodes.consumer import solver
from nodes.prompts import CONSUMER_ADAPTER, CONSUMER_SYSTEM, SEED_PROMPTS, consumer_system
from prompt_registry import Prompt
from prompt_registry.registry import PromptRegistry

ADAPTERS = ("good", "bad")


class AdapterSensitiveChatModel(ScriptedChatModel):
    """TEST DOUBLE: the scripted double, right on the tricky tasks' first attempt only when the
    request's `lora` field applies the adapter "good"; every request's applied adapter is kept."""

    applied: ClassVar[list[str | None]] = []
    _local: ClassVar[threading.local] = threading.local()

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        lora = (kwargs.get("extra_body") or {}).get("lora", [])
        active = [ADAPTERS[item["id"]] for item in lora if item["scale"] > 0]
        AdapterSensitiveChatModel._local.adapter = active[0] if active else None
        AdapterSensitiveChatModel.applied.append(AdapterSensitiveChatModel._local.adapter)
        return super()._generate(messages, *args, **kwargs)

    def knows_the_bug(self, prompt: str, entry_point: str) -> bool:
        good = getattr(AdapterSensitiveChatModel._local, "adapter", None) == "good"
        return good or super().knows_the_bug(prompt, entry_point)


class WeightsDouble:
    """TEST DOUBLE for `WeightsLearning`: proposes `adapter` without sampling or training; the
    chat double reads the adapter from each request, so serving changes nothing."""

    def __init__(self, adapter: str | None) -> None:
        self.adapter = adapter
        self.sampled_with: list[str] = []

    def propose(
        self, evaluator: MeshEvaluator, items: list[TaskItem], active: str
    ) -> tuple[str | None, dict[str, Any]]:
        self.sampled_with.append(active)
        return self.adapter, {"sampling": {"examples": 4, "example_tasks": 2}, "training": None}

    def serving(self, services: MeshContext) -> MeshContext:
        return services


@pytest.fixture
def adapter_services(learning_settings: Settings) -> MeshContext:
    """Services whose settings list the adapters "good" and "bad" (the endpoint self-hosted, so
    requests carry the `lora` field) and whose model is the adapter-sensitive double."""
    settings = learning_settings.model_copy(
        update={
            "local_model_loras": [Path(f"{name}.gguf") for name in ADAPTERS],
            "llm_base_url": "http://double.invalid/v1",
        }
    )
    AdapterSensitiveChatModel.applied.clear()
    services = build_context(settings, use_memory=False)
    return dataclasses.replace(services, llm=AdapterSensitiveChatModel())


def _learner(
    services: MeshContext, registry: PromptRegistry, split: Any, weights: Any, alpha: float
) -> Learner:
    evaluator = MeshEvaluator(services, db=registry.db, registry=registry, attempts=1)
    return Learner(evaluator, registry, *split, alpha=alpha, weights=weights)


def test_the_algorithm_samples_k_answers_per_task_and_keeps_the_verified_ones(
    evaluator: MeshEvaluator, catalogue: list[Task]
) -> None:
    produced = [t.model_copy(update={"source": "producer"}) for t in catalogue[:3]]
    options = ExpertIterationOptions(samples=2, per_task=1)
    algorithm = sample_round(evaluator, task_items(produced), "", options)
    data = algorithm.data
    assert data is not None
    assert len(data.samples) == 6
    assert {s.task.task_id for s in data.samples if s.task} == {t.task_id for t in produced}
    passed = [s for s in data.samples if s.passed]
    assert passed, "the scripted double solves the catalogue's easy tasks"
    examples = data.selection.examples
    assert 0 < len(examples) <= 3  # one per task at most
    for example in examples:
        roles = [m["role"] for m in example.messages]
        assert roles == ["system", "user", "assistant"]
        assert "def " in str(example.messages[-1]["content"])


def test_a_stopped_round_keeps_each_tasks_samples_and_samples_only_the_rest(
    evaluator: MeshEvaluator, catalogue: list[Task]
) -> None:
    produced = task_items([t.model_copy(update={"source": "producer"}) for t in catalogue[:3]])
    options = ExpertIterationOptions(samples=2, per_task=1)
    kept: list[list[Any]] = []
    first = sample_round(evaluator, produced[:1], "", options, on_samples=kept.append)
    assert [len(samples) for samples in kept] == [2]  # handed over as the task finished
    rest = sample_round(evaluator, produced[1:], "", options, prior=kept[0])
    assert first.data is not None and rest.data is not None
    tasks = [s.task.task_id for s in rest.data.samples if s.task]
    assert sorted(set(tasks)) == sorted(item["task"]["task_id"] for item in produced)
    assert len(rest.data.samples) == 6


def test_dataset_tasks_outside_the_train_split_never_become_examples(
    evaluator: MeshEvaluator, catalogue: list[Task]
) -> None:
    algorithm = sample_round(
        evaluator, task_items(catalogue[:2]), "", ExpertIterationOptions(samples=1)
    )
    assert algorithm.data is not None
    assert algorithm.data.selection.examples == []
    assert algorithm.data.selection.refused["not a training task"] == 2


def test_a_better_adapter_is_promoted_and_reaches_the_consumers_requests(
    adapter_services: MeshContext, registry: PromptRegistry, split: Any
) -> None:
    weights = WeightsDouble("good")
    learner = _learner(adapter_services, registry, split, weights, alpha=1.0)
    report = learner.run_round(CONSUMER_ADAPTER, "expert-iteration")
    assert report.decision == "promoted", report
    assert report.val_candidate is not None
    assert report.val_candidate.pass_rate > report.val_before.pass_rate
    assert weights.sampled_with == [""]  # sampled with the base model (no adapter yet)
    assert registry.current(CONSUMER_ADAPTER).text == "good"
    live = dataclasses.replace(adapter_services, prompts=None, registry=registry)
    AdapterSensitiveChatModel.applied.clear()
    solver(live, consumer_system(live).adapter).invoke("hello")
    assert AdapterSensitiveChatModel.applied == ["good"]
    registry.rollback(CONSUMER_ADAPTER, "test rollback")
    assert registry.current(CONSUMER_ADAPTER).text == ""
    AdapterSensitiveChatModel.applied.clear()
    solver(live, consumer_system(live).adapter).invoke("hello")
    assert AdapterSensitiveChatModel.applied == [None]


def test_an_adapter_that_does_not_beat_the_active_one_is_rejected(
    adapter_services: MeshContext, registry: PromptRegistry, split: Any
) -> None:
    learner = _learner(adapter_services, registry, split, WeightsDouble("bad"), alpha=0.05)
    report = learner.run_round(CONSUMER_ADAPTER, "expert-iteration")
    assert report.decision == "rejected"
    assert registry.current(CONSUMER_ADAPTER).version == "v0"
    assert [v.text for v in registry.versions(CONSUMER_ADAPTER, "rejected")] == ["bad"]


def test_no_verified_answer_means_no_candidate(
    adapter_services: MeshContext, registry: PromptRegistry, split: Any
) -> None:
    learner = _learner(adapter_services, registry, split, WeightsDouble(None), alpha=0.05)
    report = learner.run_round(CONSUMER_ADAPTER, "expert-iteration")
    assert report.decision == "no-candidate"
    assert registry.versions(CONSUMER_ADAPTER, "candidate", "rejected") == []


def test_expert_iteration_learns_only_the_adapter_and_needs_the_weights(
    adapter_services: MeshContext, registry: PromptRegistry, split: Any
) -> None:
    with pytest.raises(ValueError, match=r"consumer\.adapter"):
        _learner(adapter_services, registry, split, WeightsDouble("good"), 1.0).run_round(
            CONSUMER_SYSTEM, "expert-iteration"
        )
    with pytest.raises(ValueError, match="--llm local"):
        _learner(adapter_services, registry, split, None, 1.0).run_round(
            CONSUMER_ADAPTER, "expert-iteration"
        )


def test_an_adapter_the_server_did_not_load_leaves_the_base_model_answering(
    adapter_services: MeshContext, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = {**SEED_PROMPTS, CONSUMER_ADAPTER: Prompt(CONSUMER_ADAPTER, "v9", "consumer-unknown")}
    context = dataclasses.replace(adapter_services, prompts=prompts)
    AdapterSensitiveChatModel.applied.clear()
    solver(context, consumer_system(context).adapter).invoke("hello")
    solver(context, "consumer-unknown").invoke("hello")
    assert AdapterSensitiveChatModel.applied == [None, None]
    assert caplog.text.count("consumer-unknown is not loaded") == 1  # said once, not per call
