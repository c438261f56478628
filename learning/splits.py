"""The committed HumanEval splits for learning experiments: train (optimizers learn on it),
validation (promotions are decided on it) and test (only ever reported)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Literal

from graph.datasets import humaneval_tasks
from graph.state import Task

Split = Literal["train", "val", "test"]


@cache
def split_ids() -> dict[str, list[str]]:
    """Task ids of each split, as committed in `learning/data/humaneval_splits.json`."""
    document = json.loads(files("learning").joinpath("data/humaneval_splits.json").read_text())
    return {name: list(document[name]) for name in ("train", "val", "test")}


def humaneval_split_tasks(split: Split, limit: int | None = None) -> list[Task]:
    """The tasks of one split (the first `limit` of them), in HumanEval order."""
    wanted = split_ids()[split][:limit]
    by_id = {task.task_id: task for task in humaneval_tasks()}
    return [by_id[task_id] for task_id in wanted]
