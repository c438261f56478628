"""The evaluator's loop: the product's (hidden counts, ends on the verdict) or the honest
evaluation's (`public`: nothing hidden reaches the model; with no public test CodeT's tests choose
among every attempt drawn)."""

from __future__ import annotations

from graph.context import MeshContext
from graph.state import Task
from learning.candidates import MeshEvaluator, task_items
from prompt_registry.registry import PromptRegistry


def _hidden_only(task: Task) -> Task:
    """The task with its tests hidden: nothing public to check an answer with."""
    return task.model_copy(update={"tests": [], "hidden_tests": list(task.tests)})


def test_the_public_loop_draws_every_attempt_where_nothing_is_public(
    sensitive_services: MeshContext, registry: PromptRegistry, catalogue: list[Task]
) -> None:
    item = task_items([_hidden_only(catalogue[0])])[0]  # `add`: the double solves it at once
    product = MeshEvaluator(sensitive_services, db=registry.db, registry=registry, attempts=2)
    honest = MeshEvaluator(
        sensitive_services, db=registry.db, registry=registry, attempts=2, feedback="public"
    )
    ends_on_verdict = product.run_one(item, {})
    assert ends_on_verdict.passed and ends_on_verdict.attempts == 1
    chosen_by_codet = honest.run_one(item, {})
    assert chosen_by_codet.passed and chosen_by_codet.attempts == 2
