"""Training data for the consumer's weights, from the loop's own verified rollouts (expert
iteration / rejection sampling): the consumer's conversations whose solution passed every hidden
test, on training tasks only.

A conversation is kept only when
- its task is a training task: HumanEval's train split, or a produced task not held out;
  never a validation or test problem (`learning.splits`);
- the run's verdict passed (the hidden tests decide it: `Task.verdict_tests`);
- no hidden test's text appears anywhere in its prompt;
- it is not a duplicate (same task, same code once whitespace is normalised);
- its task has not already given `per_task` conversations (balance: easy tasks would otherwise
  fill the set).

The conversations come from the rollouts' LLM spans through agent-lightning's `TraceToMessages`
adapter (`learning.expert_iteration`); this module imports no agent-lightning.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graph.state import Task
from learning.splits import split_ids

Message = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One sampled answer of a rollout: its task, the consumer's conversation (prompt messages,
    the answer last), and the run's verdict and reward."""

    rollout_id: str
    task: Task | None
    messages: list[Message]
    passed: bool
    reward: float


@dataclass(frozen=True)
class Example:
    """One supervised example: a conversation ending with the verified answer."""

    task_id: str
    messages: list[Message]
    reward: float


@dataclass
class Selection:
    """The examples chosen, and how many samples each rule turned away."""

    examples: list[Example] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def tasks(self) -> int:
        return len({e.task_id for e in self.examples})

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": len(self.examples),
            "example_tasks": self.tasks,
            "refused": dict(self.refused),
        }


def excluded_ids(held_out: Collection[str] = ()) -> frozenset[str]:
    """Task ids no example may come from: HumanEval's validation and test problems, and the
    produced tasks held out for evaluation."""
    ids = split_ids()
    return frozenset(ids["val"]) | frozenset(ids["test"]) | frozenset(held_out)


def training_task(task: Task | None, excluded: Collection[str]) -> bool:
    """Whether `task` may teach: a HumanEval problem of the train split, or a produced task not
    excluded; never another dataset's problem (it may be another benchmark's test)."""
    if task is None or task.task_id in excluded:
        return False
    if task.source == "dataset":
        return task.task_id in split_ids()["train"]
    return task.source == "producer"


def select_examples(
    samples: Iterable[Sample], *, held_out: Collection[str] = (), per_task: int = 2
) -> Selection:
    """The SFT examples among `samples` (see the module's rules), best rewarded first per task."""
    excluded = excluded_ids(held_out)
    selection = Selection()
    seen: set[tuple[str, str]] = set()
    per: Counter[str] = Counter()
    for sample in sorted(samples, key=lambda s: (-s.reward, s.rollout_id)):
        reason = _refusal(sample, excluded, seen, per, per_task)
        if reason is not None:
            selection.refused[reason] += 1
            continue
        assert sample.task is not None
        task_id = sample.task.task_id
        seen.add((task_id, _normalised(_answer(sample.messages))))
        per[task_id] += 1
        selection.examples.append(Example(task_id, list(sample.messages), sample.reward))
    return selection


def _refusal(
    sample: Sample,
    excluded: Collection[str],
    seen: set[tuple[str, str]],
    per: Counter[str],
    per_task: int,
) -> str | None:
    """Why `sample` may not teach, or None."""
    task = sample.task
    if task is None or not training_task(task, excluded):
        return "not a training task"
    if not sample.passed:
        return "hidden tests failed"
    if len(sample.messages) < 2 or sample.messages[-1].get("role") != "assistant":
        return "no answer"
    if _leaks_hidden(sample.messages, task):
        return "hidden test in prompt"
    if (task.task_id, _normalised(_answer(sample.messages))) in seen:
        return "duplicate"
    if per[task.task_id] >= per_task:
        return "task already balanced"
    return None


def _answer(messages: Sequence[Message]) -> str:
    return str(messages[-1].get("content", "")) if messages else ""


def _leaks_hidden(messages: Sequence[Message], task: Task) -> bool:
    """Whether a hidden test's text appears in the prompt (every message but the answer)."""
    prompt = _normalised("\n".join(str(m.get("content", "")) for m in messages[:-1]))
    return any(_normalised(test) in prompt for test in task.hidden_tests if len(test.strip()) > 8)


def _normalised(text: str) -> str:
    return re.sub(r"\s+", "", text)
