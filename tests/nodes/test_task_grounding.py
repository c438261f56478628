"""Grounding a produced task's tests in its reference: probe shapes, rewriting, and the real
sandbox computing the expected values."""

from __future__ import annotations

import dataclasses

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import MeshState, Task
from nodes.producer import grounded, producer
from nodes.task_grounding import (
    Probe,
    ProbeResult,
    TaskRejected,
    apply_probes,
    probes,
    read_probes,
)

# Qwen2.5-Coder-0.5B's answer to the producer prompt, verbatim: a correct reference (that forgets
# `from typing import List`) and a miscomputed test (10 + 20 + 30 is 60, not 75).
REAL_ANSWER = '```json\n{\n  "statement": "Implement a function that takes a list of integers and returns the sum of all even numbers.",\n  "signature": "def sum_even_numbers(numbers: List[int]) -> int",\n  "entry_point": "sum_even_numbers",\n  "tests": [\n    "assert sum_even_numbers([1, 2, 3, 4, 5]) == 6", // 2 + 4 = 6\n    "assert sum_even_numbers([10, 15, 20, 25, 30]) == 75", // 10 + 20 = 30\n    "assert sum_even_numbers([-2, -4, -6, -8]) == -20", // -2 + -4 = -6",\n    "assert sum_even_numbers([]) == 0" // No even numbers in an empty list\n  ],\n  "category": "strings",\n  "difficulty": 7\n}\n\n```python\ndef sum_even_numbers(numbers: List[int]) -> int:\n    return sum(num for num in numbers if num % 2 == 0)\n```'


def _task(tests: list[str], reference: str = "def f(x):\n    return x * 2\n") -> Task:
    return Task(
        task_id="t-1",
        statement="Double x.",
        signature="def f(x)",
        entry_point="f",
        tests=tests,
        reference_solution=reference,
    )


def test_probes_find_the_one_checked_call_in_each_assert_shape() -> None:
    task = _task(
        [
            "assert f(2) == 5",
            "assert 5 == f(2)",
            "assert f(1)",
            "assert not f(0)",
            "assert f(None) is None",
            "assert candidate(3) == 6",
            "assert len(f([1])) == 2",
        ]
    )
    assert [p.call for p in probes(task)] == [
        "f(2)",
        "f(2)",
        "f(1)",
        "f(0)",
        "f(None)",
        "candidate(3)",
        "len(f([1]))",
    ]


def test_tests_of_other_shapes_are_not_probed() -> None:
    task = _task(
        [
            "assert f(1) == f(2) - 2",  # both sides call the function
            "assert f(1) != 3",  # not an equality
            "assert 1 < f(1) < 3",  # a chained comparison
            "assert other(1) == 2",  # does not call the entry point
            "x = f(1)\nassert x == 2",  # more than one statement
            "assert f(1 ==",  # not Python
        ]
    )
    assert probes(task) == []


def test_read_probes_ignores_other_output_and_decodes_the_repr() -> None:
    stdout = (
        "the reference printed this\n"
        "__aimesh_probe__ 0 ok str \"'a b'\"\n"
        "__aimesh_probe__ 2 raised ValueError \n"
        "__aimesh_probe__ x ok int '1'\n"
        "__aimesh_probe__ 3 ok int not-a-literal\n"
    )
    assert read_probes(stdout) == {
        0: ProbeResult("ok", "str", "'a b'"),
        2: ProbeResult("raised", "ValueError", ""),
    }


def test_apply_probes_rewrites_expected_values_and_drops_raising_calls() -> None:
    task = _task(
        ["assert f(1) == 3", "assert f(2)", "assert f(-1) == 0", "assert f(0.1) == 1", "z"]
    )
    found = [Probe(0, "f(1)"), Probe(1, "f(2)"), Probe(2, "f(-1)"), Probe(3, "f(0.1)")]
    results = {
        0: ProbeResult("ok", "int", "2"),
        1: ProbeResult("ok", "bool", "False"),
        2: ProbeResult("raised", "ValueError", ""),
        3: ProbeResult("ok", "float", "0.2"),
    }
    assert apply_probes(task, found, results).tests == [
        "assert f(1) == 2",
        "assert f(2) is False",
        "assert abs(f(0.1) - 0.2) <= 1e-06 * max(1.0, abs(0.2))",
        "z",
    ]


def test_an_opaque_value_keeps_its_test_as_written() -> None:
    task = _task(["assert f(1) == 3"])
    assert apply_probes(task, [Probe(0, "f(1)")], {0: ProbeResult("opaque", "C", "<C>")}) == task


def test_the_sandbox_computes_what_the_model_miscomputed(scripted_services: MeshContext) -> None:
    reference = (
        "def f(x):\n"
        "    print('noise', x)\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return {'double': x * 2, 'label': 'a b\\nc'} if x > 5 else x * 2\n"
    )
    tests = [
        "assert f(2) == 5",  # miscomputed: 4
        "assert f(7) == {'double': 14}",  # miscomputed: also has a label with a newline
        "assert f(-1) == 0",  # the reference raises: dropped
        "assert f(0.5) == 2",  # a float: compared with a tolerance
        "assert f(3) != 7",  # not probed, holds as written
    ]
    task = grounded(scripted_services, _task(tests, reference))
    assert task.tests == [
        "assert f(2) == 4",
        "assert f(7) == {'double': 14, 'label': 'a b\\nc'}",
        "assert abs(f(0.5) - 1.0) <= 1e-06 * max(1.0, abs(1.0))",
        "assert f(3) != 7",
    ]


def test_tests_the_reference_still_fails_are_dropped(scripted_services: MeshContext) -> None:
    tests = ["assert f(1) == 2", "assert f(2) == 4", "assert f(3) != 6", "assert f(1) < 0"]
    task = grounded(scripted_services, _task(tests))
    assert task.tests == ["assert f(1) == 2", "assert f(2) == 4"]


def test_a_broken_reference_or_too_few_tests_rejects_the_task(
    scripted_services: MeshContext,
) -> None:
    tests = ["assert f(1) == 2", "assert f(2) == 4"]
    with pytest.raises(TaskRejected, match="SyntaxError"):
        grounded(scripted_services, _task(tests, "def f(x):\n  retur x"))
    with pytest.raises(TaskRejected, match="fewer than 2 tests hold"):
        grounded(scripted_services, _task(tests, "def f(x):\n    raise ValueError(x)\n"))


def test_a_reference_returning_one_value_for_every_test_is_rejected(
    scripted_services: MeshContext,
) -> None:
    stub = "def f(x):\n    # Your implementation here\n    pass\n"
    with pytest.raises(TaskRejected, match="returns None for every test"):
        grounded(scripted_services, _task(["assert f(1) == 2", "assert f(2) == 4"], stub))


def _produce(services: MeshContext, answer: str, *, ground: bool) -> MeshState:
    settings = services.settings.model_copy(
        update={"producer_ground_tests": ground, "producer_max_tries": 1}
    )
    # FakeListChatModel: langchain's TEST DOUBLE answering with the given texts in turn
    double = dataclasses.replace(
        services, settings=settings, llm=FakeListChatModel(responses=[answer])
    )
    update = producer(MeshState(), Runtime(context=double))
    return MeshState.model_validate({**MeshState().model_dump(), **update})


def test_the_producer_grounds_a_real_small_model_answer(scripted_services: MeshContext) -> None:
    state = _produce(scripted_services, REAL_ANSWER, ground=True)
    assert state.status == "solving" and state.task is not None
    assert "assert sum_even_numbers([10, 15, 20, 25, 30]) == 60" in state.task.all_tests
    assert state.task.reference_solution is not None
    assert state.task.reference_solution.startswith("from typing import List")


def test_without_grounding_the_same_answer_is_rejected(scripted_services: MeshContext) -> None:
    state = _produce(scripted_services, REAL_ANSWER, ground=False)
    assert state.status == "failed" and state.task is None
    assert "the reference solution fails the tests" in (state.error or "")
