"""The offline bandit (UCB1 / Thompson over registry versions), the periodic optimizer on a running
mesh, and the `aimesh learn` command line."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

from app.cli.main import app
from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.edges import FanOutSink, StepRecord
from graph.runner import BatchRunner
from graph.state import MeshState, Task
from learning.bandit import propose_variants, thompson, ucb1
from learning.candidates import MeshEvaluator, producer_items, text_label
from learning.learner import Learner
from learning.periodic import PeriodicOptimizer, learner_round
from learning.rollouts import RolloutRecorder
from nodes import NODE_FUNCTIONS, prompts
from nodes.prompts import CONSUMER_SYSTEM, PRODUCER_SYSTEM, SEED_PROMPTS
from prompt_registry.registry import PromptRegistry, PromptVersion

C = CONSUMER_SYSTEM
MAGIC = "edge cases"


def _arm(version: str, n: int, mean: float) -> PromptVersion:
    return PromptVersion(C, version, version, None, 0.0, "candidate", "t", "", n, mean, 0.0)


def test_policies() -> None:
    assert ucb1([_arm("a", 5, 0.9), _arm("b", 0, 0.0)]).version == "b"  # unpulled first
    assert ucb1([_arm("a", 50, 0.9), _arm("b", 50, 0.5)]).version == "a"
    assert ucb1([_arm("a", 100, 0.6), _arm("b", 1, 0.5)]).version == "b"  # exploration bonus
    rng = random.Random(0)
    picks = [thompson([_arm("a", 40, 0.9), _arm("b", 40, 0.3)], rng).version for _ in range(50)]
    assert picks.count("a") >= 48


def test_variants_are_deterministic_and_not_repeated(registry: PromptRegistry) -> None:
    added = propose_variants(registry, C, wanted=2)
    assert [v.version for v in added] == ["v1.1", "v1.2"]
    assert all(v.text.startswith(registry.current(C).text) for v in added)
    assert propose_variants(registry, C, wanted=2) == []  # two open candidates already
    registry.reject(C, "v1.1")
    assert [v.version for v in propose_variants(registry, C, wanted=2)] == ["v1.3"]


def test_bandit_promotes_the_better_variant_and_rejects_a_tie(
    evaluator: MeshEvaluator,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    train, val = split
    evaluator.cache = True
    # the mechanics: one tricky validation task of three can never be significant, so alpha=1
    learner = Learner(evaluator, registry, train, val, batch=3, arms=3, alpha=1.0)
    reports = [learner.run_round(C, "bandit") for _ in range(5)]
    decisions = [r.decision for r in reports]
    assert "promoted" in decisions, reports
    assert MAGIC in registry.current(C).text
    promoted = next(r for r in reports if r.decision == "promoted")
    assert promoted.val_candidate is not None
    assert promoted.val_candidate.reward > promoted.val_before.reward
    assert registry.get(C, "v1").status == "retired"
    assert "rejected" in decisions  # a later variant that is no better than the new active one
    assert registry.versions(C, "rejected")
    assert reports[-1].val_after.pass_rate == 1.0


def test_periodic_optimizer_counts_reviewed_tasks() -> None:
    calls: list[int] = []
    optimizer = PeriodicOptimizer(3, lambda: calls.append(1) or [], background=False)
    end = StepRecord(node="supervisor", next_node="__end__", state=MeshState(), latency_ms=1)
    mid = StepRecord(node="consumer", next_node="sandbox", state=MeshState(), latency_ms=1)
    for _ in range(7):
        optimizer.on_step(mid)
        optimizer.on_step(end)
    assert (optimizer.seen, len(calls)) == (7, 2)
    # a round with too few tasks reports nothing: not counted as a round
    assert (optimizer.rounds, optimizer.too_few_tasks, optimizer.reports) == (0, 2, [])
    assert optimizer.summary() == "learning: 0 round(s) (none); 2 not run (too few tasks seen yet)"


def test_periodic_optimizer_on_a_running_mesh(
    sensitive_services: MeshContext,
    registry: PromptRegistry,
    catalogue: list[Task],
) -> None:
    """Every 3 tasks the running mesh triggers one bandit round in the background; the rounds'
    promotions are read by the following runs (MeshContext built from the registry per run)."""
    tasks = catalogue
    round_function = learner_round(
        sensitive_services,
        registry,
        train=3,
        val=3,
        tasks=lambda: tasks,
        learner_options={"batch": 3, "arms": 3, "alpha": 1.0},  # 3 validation tasks: mechanics
    )
    optimizer = PeriodicOptimizer(3, round_function, background=True)
    recorder = RolloutRecorder(registry.db, registry=registry)
    graph = compile_mesh(NODE_FUNCTIONS, InMemorySaver(), FanOutSink(recorder, optimizer))
    used = []
    for i in range(9):
        services = dataclasses.replace(sensitive_services, prompts=registry.current_all())
        runner = BatchRunner(graph, services, batch_id=f"mesh-{i}")
        runner.run_task(0, tasks[i % len(tasks)], max_attempts=1)
        used.append(prompts.current(services, C).version)
        optimizer.wait(60)
    assert optimizer.rounds == 3 and not optimizer.errors
    # v1 already has live rewards, so UCB1 pulls a fresh variant first: the "edge cases" one wins.
    assert optimizer.reports[0].decision == "promoted"
    promoted = optimizer.reports[0].active_after
    assert used == ["v1"] * 3 + [promoted] * 6
    assert registry.current(C).version == promoted and MAGIC in registry.current(C).text
    assert len(registry.db.query("SELECT * FROM rollouts WHERE source = 'mesh'")) == 9


def test_learn_cli_bandit_round_and_registry_commands(data_dir: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIMESH_DATA_DIR", str(data_dir))
    runner = CliRunner()
    args = ["--llm", "scripted", "--algorithm", "bandit", "--rounds", "2", "--train", "2"]
    result = runner.invoke(app, ["learn", *args, "--val", "2", "--json", str(data_dir / "r.json")])
    assert result.exit_code == 0, result.output
    assert "learning rounds" in result.output and (data_dir / "r.json").exists()

    status = runner.invoke(app, ["learn", "status", "--data-dir", str(data_dir)])
    assert status.exit_code == 0 and "consumer.system" in status.output
    history = runner.invoke(app, ["learn", "history", C, "--data-dir", str(data_dir)])
    assert history.exit_code == 0 and "v1.1" in history.output
    show = runner.invoke(app, ["learn", "show", C, "v1.1", "--data-dir", str(data_dir)])
    assert show.exit_code == 0 and "edge cases" in show.output

    registry = PromptRegistry.in_data_dir(data_dir, SEED_PROMPTS)
    if registry.get(C, "v1.1").status != "rejected":
        promote = runner.invoke(app, ["learn", "promote", C, "v1.1", "--data-dir", str(data_dir)])
        assert promote.exit_code == 0 and "now v1.1" in promote.output
        back = runner.invoke(app, ["learn", "rollback", C, "--data-dir", str(data_dir)])
        assert back.exit_code == 0 and "rolled back to v1" in back.output
    nothing = runner.invoke(app, ["learn", "rollback", C, "--data-dir", str(data_dir)])
    assert nothing.exit_code == 2 and "no earlier active version" in nothing.output

    apo = runner.invoke(app, ["learn", "--llm", "scripted", "--algorithm", "apo"])
    assert apo.exit_code == 2 and "APO needs an LLM" in apo.output


def test_the_producer_prompt_is_evaluated_on_tasks_it_invents(
    evaluator: MeshEvaluator, registry: PromptRegistry
) -> None:
    text = registry.current(PRODUCER_SYSTEM).text + "\nKeep tests deterministic."
    score, traces = evaluator.evaluate(producer_items(2), PRODUCER_SYSTEM, text)
    # published on the first try: each scores what its task was worth (learning.rollouts.task_worth)
    worth = [t.rewards[PRODUCER_SYSTEM] for t in traces]
    assert score.n == 2 and set(worth) <= {0.25, 0.5, 1.0}
    assert score.reward == pytest.approx(sum(worth) / 2)
    assert all(t.task is not None and t.task.source == "producer" for t in traces)
    assert {t.prompt_versions[PRODUCER_SYSTEM] for t in traces} == {text_label(text)}
    report = Learner(
        evaluator, registry, producer_items(2), producer_items(2, start=2), batch=2
    ).run_round(PRODUCER_SYSTEM, "bandit")
    assert report.prompt == PRODUCER_SYSTEM and report.val_before.reward >= 0.25
