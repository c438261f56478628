"""The expert-iteration data filter: only verified answers of training tasks, never a validation
or test problem, never a hidden test's text in a prompt, deduplicated and balanced per task."""

from __future__ import annotations

from graph.datasets import humaneval_tasks
from graph.state import Task
from learning.sft_data import Sample, excluded_ids, select_examples, training_task
from learning.splits import split_ids


def _task(task_id: str, source: str = "producer", hidden: tuple[str, ...] = ()) -> Task:
    return Task(
        task_id=task_id,
        statement="Add two numbers.",
        signature="def add(a: int, b: int) -> int",
        entry_point="add",
        tests=["assert add(1, 2) == 3"],
        hidden_tests=list(hidden),
        source=source,
    )


def _sample(
    task: Task,
    answer: str = "```python\ndef add(a, b):\n    return a + b\n```",
    *,
    passed: bool = True,
    reward: float = 0.9,
    prompt: str = "Task:\nAdd two numbers.",
    number: int = 0,
) -> Sample:
    messages = [
        {"role": "system", "content": "You are an expert Python programmer."},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
    ]
    return Sample(f"r{number}", task, messages, passed, reward)


def _humaneval(split: str) -> Task:
    wanted = split_ids()[split][0]
    return next(t for t in humaneval_tasks() if t.task_id == wanted)


def test_validation_and_test_problems_never_teach_even_when_solved() -> None:
    samples = [_sample(_humaneval("val")), _sample(_humaneval("test"), number=1)]
    selection = select_examples(samples)
    assert selection.examples == []
    assert selection.refused["not a training task"] == 2


def test_a_train_split_problem_and_a_produced_task_teach() -> None:
    train = _humaneval("train")
    selection = select_examples([_sample(train), _sample(_task("p1"), number=1)])
    assert {e.task_id for e in selection.examples} == {train.task_id, "p1"}
    assert selection.examples[0].messages[-1]["role"] == "assistant"


def test_held_out_produced_tasks_and_other_datasets_are_refused() -> None:
    assert not training_task(_task("p1"), excluded_ids(held_out=["p1"]))
    assert not training_task(_task("MBPP-3", source="dataset"), excluded_ids())
    assert training_task(_task("p2"), excluded_ids(held_out=["p1"]))
    assert not training_task(None, excluded_ids())


def test_only_answers_that_passed_the_hidden_tests_are_kept() -> None:
    selection = select_examples([_sample(_task("p1"), passed=False)])
    assert selection.examples == []
    assert selection.refused == {"hidden tests failed": 1}


def test_a_prompt_holding_a_hidden_test_is_refused() -> None:
    hidden = "assert add(40, 2) == 42"
    task = _task("p1", hidden=(hidden,))
    leaked = _sample(task, prompt="Task:\nAdd two numbers.\nExample: assert add(40,  2) == 42")
    selection = select_examples([leaked, _sample(task, number=1)])
    assert selection.refused["hidden test in prompt"] == 1
    assert len(selection.examples) == 1
    assert all(hidden not in str(m["content"]) for m in selection.examples[0].messages[:-1])


def test_duplicates_are_dropped_and_each_task_is_balanced() -> None:
    task = _task("p1")
    same = "```python\ndef add(a, b):\n    return a + b\n```"
    spaced = "```python\ndef add(a, b):\n\n    return a  +  b\n```"
    others = [f"```python\ndef add(a, b):\n    return {i} + a + b - {i}\n```" for i in range(3)]
    samples = [_sample(task, same), _sample(task, spaced, number=1)]
    samples += [_sample(task, text, number=2 + i, reward=0.5) for i, text in enumerate(others)]
    selection = select_examples(samples, per_task=2)
    assert len(selection.examples) == 2
    assert selection.refused["duplicate"] == 1
    assert selection.refused["task already balanced"] == 2
    assert selection.examples[0].messages[-1]["content"] == same  # the best rewarded first
