"""The committed HumanEval splits: fixed, disjoint, complete."""

from __future__ import annotations

from graph.datasets import humaneval_tasks
from learning.candidates import humaneval_split
from learning.splits import humaneval_split_tasks, split_ids


def test_the_splits_are_disjoint_and_cover_humaneval() -> None:
    ids = split_ids()
    assert [len(ids[s]) for s in ("train", "val", "test")] == [40, 40, 84]
    everything = ids["train"] + ids["val"] + ids["test"]
    assert len(set(everything)) == 164
    assert set(everything) == {t.task_id for t in humaneval_tasks()}


def test_learning_draws_from_train_and_validation_only() -> None:
    train, val = humaneval_split(6, 8)
    test = {t.task_id for t in humaneval_split_tasks("test")}
    assert [t.task_id for t in train] == split_ids()["train"][:6]
    assert [t.task_id for t in val] == split_ids()["val"][:8]
    assert not test & {t.task_id for t in train + val}
