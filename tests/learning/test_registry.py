"""PromptRegistry: seeding, candidates, promotion, rejection, rollback, reward statistics,
persistence across restarts."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from nodes.prompts import CONSUMER_SYSTEM, SEED_PROMPTS, Prompt
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry, RegistryError

C = CONSUMER_SYSTEM


def test_seeded_from_the_code_seeds(registry: PromptRegistry) -> None:
    assert registry.current_all() == SEED_PROMPTS
    assert registry.current(C) == SEED_PROMPTS[C]
    [seed] = registry.history(C)
    assert (seed.status, seed.source, seed.parent, seed.n) == ("active", "seed", None, 0)
    assert [e.event for e in registry.events(C)] == ["seeded"]


def test_candidates_get_learned_labels_and_identical_texts_are_not_duplicated(
    registry: PromptRegistry,
) -> None:
    first = registry.add_candidate(C, "Write correct code.", source="test")
    second = registry.add_candidate(C, "Write correct, tested code.", parent=first.version)
    assert (first.version, second.version) == ("v1.1", "v1.2")
    assert registry.get(C, second.version).parent == "v1.1"
    assert registry.add_candidate(C, "Write correct code.") == first
    assert registry.current(C).version == "v1"  # a candidate does not serve
    with pytest.raises(RegistryError):
        registry.add_candidate(C, "   ")
    with pytest.raises(RegistryError):
        registry.add_candidate(C, "text", parent="v9")


def test_promote_retires_the_previous_version(registry: PromptRegistry) -> None:
    cand = registry.add_candidate(C, "Write correct code.")
    assert registry.promote(C, cand.version) == cand
    assert registry.current(C) == cand
    assert registry.current_all()[C] == cand
    assert {v.version: v.status for v in registry.history(C)} == {"v1": "retired", "v1.1": "active"}
    with pytest.raises(RegistryError):
        registry.promote(C, "v7")


def test_reject_keeps_the_candidate_and_refuses_the_active_version(
    registry: PromptRegistry,
) -> None:
    cand = registry.add_candidate(C, "Worse prompt.")
    registry.reject(C, cand.version, "lost on validation")
    assert registry.get(C, cand.version).status == "rejected"
    assert registry.versions(C, "rejected")[0].text == "Worse prompt."
    with pytest.raises(RegistryError):
        registry.reject(C, "v1")


def test_rollback_walks_back_through_the_promotions(registry: PromptRegistry) -> None:
    a = registry.add_candidate(C, "A")
    registry.promote(C, a.version)
    b = registry.add_candidate(C, "B")
    registry.promote(C, b.version)
    assert registry.rollback(C).version == a.version
    assert registry.get(C, b.version).status == "rejected"
    assert registry.rollback(C).version == "v1"
    assert registry.get(C, a.version).status == "rejected"
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback(C)
    events = [(e.version, e.event) for e in registry.events(C)]
    assert events[-2:] == [("v1.1", "rolled_back"), ("v1", "reactivated")]


def test_reward_statistics(registry: PromptRegistry) -> None:
    rewards = [0.2, 0.9, 0.5, 0.7]
    for r in rewards:
        assert registry.record_reward(C, "v1", r)
    v1 = registry.get(C, "v1")
    assert v1.n == 4
    assert v1.mean == pytest.approx(statistics.fmean(rewards))
    assert v1.std == pytest.approx(statistics.stdev(rewards))
    assert not registry.record_reward(C, "cand-unknown", 1.0)


def test_history_survives_a_restart(data_dir: Path) -> None:
    first = PromptRegistry.in_data_dir(data_dir, SEED_PROMPTS)
    cand = first.add_candidate(C, "Persisted prompt.")
    first.promote(C, cand.version)
    first.record_reward(C, cand.version, 0.75)
    first.db.close()
    reopened = PromptRegistry.in_data_dir(data_dir, SEED_PROMPTS)
    assert reopened.current(C) == cand
    assert reopened.get(C, cand.version).n == 1
    assert [v.version for v in reopened.history(C)] == ["v1", "v1.1"]
    assert (data_dir / "learning.sqlite").exists()


def test_a_new_code_seed_replaces_a_seed_but_not_a_learned_version(tmp_path: Path) -> None:
    db = LearningDB(tmp_path / "l.sqlite")
    registry = PromptRegistry(db, SEED_PROMPTS)
    v2 = Prompt(C, "v2", "A newer seed written by a developer.")
    assert PromptRegistry(db, seeds={**SEED_PROMPTS, C: v2}).current(C) == v2

    other = PromptRegistry(LearningDB(tmp_path / "m.sqlite"), SEED_PROMPTS)
    learned = other.add_candidate(C, "Learned.")
    other.promote(C, learned.version)
    again = PromptRegistry(other.db, seeds={**SEED_PROMPTS, C: v2})
    assert again.current(C) == learned
    assert again.get(C, "v2").status == "candidate"
    assert registry.current(C) == v2
