"""A learning run stopped mid-round replays the evaluations it had finished: `MeshEvaluator` with a
`cache_path` keeps each outcome on disk, and a new evaluator on the same file runs only what is
missing (scripted TEST DOUBLE, real sandbox)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graph.context import MeshContext
from learning.candidates import MeshEvaluator
from learning.evaluation_cache import trace_as_json, trace_of
from nodes.prompts import CONSUMER_SYSTEM, SEED_PROMPTS
from prompt_registry.registry import PromptRegistry


def _evaluator(services: MeshContext, registry: PromptRegistry, path: Path) -> MeshEvaluator:
    return MeshEvaluator(services, db=registry.db, registry=registry, cache=True, cache_path=path)


def test_a_new_evaluator_replays_the_finished_evaluations(
    sensitive_services: MeshContext,
    registry: PromptRegistry,
    split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    items, _ = split
    seed = SEED_PROMPTS[CONSUMER_SYSTEM].text
    path = tmp_path / "evaluations.jsonl"
    first = _evaluator(sensitive_services, registry, path)
    score, traces = first.evaluate(items[:2], CONSUMER_SYSTEM, seed)
    assert first.runs == 2 and len(path.read_text().splitlines()) == 2
    again = _evaluator(sensitive_services, registry, path)  # as after a restart
    replayed, _ = again.evaluate(items, CONSUMER_SYSTEM, seed)
    assert (again.runs, again.cache_hits) == (1, 2)
    assert replayed.rewards[:2] == score.rewards
    again.evaluate(items[:1], CONSUMER_SYSTEM, seed + " Mind edge cases.")
    assert again.runs == 2  # another prompt text is another evaluation
    assert trace_of(trace_as_json(traces[0])) == traces[0]
