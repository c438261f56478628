"""The producer's answer format: task fields as JSON, the reference solution as a code block."""

from __future__ import annotations

import json

import pytest

from nodes.task_parsing import TaskParseError, parse_task

FIELDS = {
    "statement": "Return the sum of two integers.",
    "signature": "def add(a: int, b: int) -> int",
    "entry_point": "add",
    "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "not a test"],
    "category": "Math",
    "difficulty": 2,
}
REFERENCE = "def add(a: int, b: int) -> int:\n    return a + b\n"


def _parse(answer: str):  # type: ignore[no-untyped-def]
    return parse_task(answer, difficulty=5, task_id="t-1")


def test_json_block_then_python_block() -> None:
    answer = f"```json\n{json.dumps(FIELDS)}\n```\n\n```python\n{REFERENCE}```"
    task = _parse(answer)
    assert task.reference_solution == REFERENCE.strip()
    assert task.tests == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert (task.category, task.difficulty, task.task_id) == ("math", 2, "t-1")


def test_the_code_block_wins_over_a_flattened_json_reference() -> None:
    # What the 0.5B model wrote: the reference inside JSON with its indentation lost.
    fields = {**FIELDS, "reference_solution": "def add(a, b):\nreturn a + b"}
    answer = f"{json.dumps(fields)}\n\nHere is the solution:\n```python\n{REFERENCE}```\n"
    assert _parse(answer).reference_solution == REFERENCE.strip()


def test_an_unclosed_code_block_and_self_tests_in_it() -> None:
    answer = f"```json\n{json.dumps(FIELDS)}\n```\n```python\n{REFERENCE}\nprint(add(1, 2))\n"
    assert _parse(answer).reference_solution.strip() == REFERENCE.strip()


@pytest.mark.parametrize("given", ["add(3, 5)", "def add(a: int, b: int) -> int", " add "])
def test_the_entry_point_is_the_function_name(given: str) -> None:
    answer = f"{json.dumps({**FIELDS, 'entry_point': given})}\n```python\n{REFERENCE}```"
    assert _parse(answer).entry_point == "add"


def test_the_entry_point_falls_back_to_the_signature() -> None:
    answer = f"{json.dumps({**FIELDS, 'entry_point': None})}\n```python\n{REFERENCE}```"
    assert _parse(answer).entry_point == "add"


def test_the_earlier_all_json_format_is_still_read() -> None:
    answer = json.dumps({**FIELDS, "reference_solution": REFERENCE})
    assert _parse(answer).reference_solution == REFERENCE.strip()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I cannot help with that.", "no JSON object"),
        (json.dumps({**FIELDS, "tests": ["assert add(1, 2) == 3"]}), "two assert tests"),
        (json.dumps({**FIELDS, "entry_point": "", "signature": "?"}), "entry_point is missing"),
        (f"{json.dumps(FIELDS)}\n```python\ndef other():\n    pass\n```", "defining add()"),
    ],
)
def test_unusable_answers_say_why(answer: str, reason: str) -> None:
    with pytest.raises(TaskParseError, match=reason):
        _parse(answer)


# Two answers of Qwen2.5-Coder-0.5B to the producer prompt v2, verbatim.
UNCLOSED_JSON_BLOCK = '```json\n{\n  "statement": "Create a function that takes two lists as input and returns a new list containing only the elements that are common to both input lists.",\n  "signature": "def find_common_elements(list1: List[int], list2: List[int]) -> List[int]:",\n  "entry_point": "find_common_elements([1, 3, 5, 7], [2, 4, 6, 8])",\n  "tests": [\n    "assert find_common_elements([1, 3, 5, 7], [2, 4, 6, 8]) == [2, 4, 6, 8]",\n    "assert find_common_elements([10, 20, 30, 40], [50, 60, 70, 80]) == [50, 60, 70, 80]",\n    "assert find_common_elements([], [1, 2, 3, 4]) == [],\n    "assert find_common_elements([1, 2, 3], []) == [1, 2, 3]"\n  ],\n  "category": "strings",\n  "difficulty": 1\n}\n```python\ndef find_common_elements(list1: List[int], list2: List[int]) -> List[int]:\n    # Use set intersection to find common elements\n    return list(set(list1) & set(list2))\n```\n\nThis solution defines the `find_common_elements` function using Python\'s built-in set data structure, which provides efficient operations for finding common elements between two lists.'
CODE_IN_SIGNATURE = '```json\n{\n  "statement": "Create a function that takes two lists of numbers and returns their intersection.",\n  "signature": """\ndef intersect(list1, list2):\n    return [num for num in list1 if num in list2]\n  """,\n  "entry_point": "intersect",\n  "tests": [\n    "assert intersect([1, 3, 5], [4, 6, 8]) == [4, 6]",\n    "assert intersect([10, 20, 30], [20, 30, 40]) == [20, 30]",\n    "assert intersect([], [1, 2, 3]) == []",\n    "assert intersect([5], []) == [5]"\n  ],\n  "category": "lists",\n  "difficulty": 2\n}\n```'


def test_an_unclosed_json_block_followed_by_the_python_block() -> None:
    task = _parse(UNCLOSED_JSON_BLOCK)
    assert task.entry_point == "find_common_elements"
    # the reference uses List[int] without importing it: the import is added
    assert task.reference_solution.startswith(
        "from typing import List\n\ndef find_common_elements("
    )
    assert "```" not in task.reference_solution and len(task.tests) == 4


def test_a_function_written_into_the_signature_field() -> None:
    task = _parse(CODE_IN_SIGNATURE)
    assert task.signature == "def intersect(list1, list2)"
    assert "return [num for num in list1 if num in list2]" in task.reference_solution


def test_test_strings_missing_their_closing_quote_are_closed() -> None:
    # The 0.5B's tests list, verbatim: two strings lack their closing quote.
    answer = (
        '```json\n{"statement": "Intersect two lists.", "signature": "def intersect(a, b)",\n'
        '  "entry_point": "intersect",\n  "tests": [\n'
        '    "assert intersect([1, 4, 3], [5, 6, 7]) == [3]",\n'
        '    "assert intersect([10, 20, 30], [40, 50, 60]) == [],\n'
        '    "assert intersect([], [1, 2, 3]) == []",\n'
        '    "assert intersect([1, 2, 3], []) == []\n'
        '  ],\n  "category": "lists"\n}\n```python\n'
        "def intersect(a, b):\n    return [x for x in a if x in b]\n```"
    )
    assert _parse(answer).tests == [
        "assert intersect([1, 4, 3], [5, 6, 7]) == [3]",
        "assert intersect([10, 20, 30], [40, 50, 60]) == []",
        "assert intersect([], [1, 2, 3]) == []",
        "assert intersect([1, 2, 3], []) == []",
    ]


def test_the_function_the_reference_defines_is_the_entry_point() -> None:
    # The 0.5B's answer, verbatim: "entry_point" and the tests name add_numbers, the signature
    # and the reference define add_lists.
    answer = (
        "```json\n{\n"
        '  "statement": "Create a function that takes two lists of numbers and returns their '
        'sum.",\n'
        '  "signature": "def add_lists(list1: list, list2: list) -> int",\n'
        '  "entry_point": "add_numbers",\n'
        '  "tests": [\n'
        '    "assert add_numbers([1, 2], [3, 4]) == 7",\n'
        '    "assert add_numbers([-1, -2], [-3, -4]) == -8",\n'
        '    "assert add_numbers([0], [0]) == 0",\n'
        '    "assert add_numbers([], []) == 0"\n'
        "  ],\n"
        '  "category": "lists",\n'
        '  "difficulty": 3\n'
        "}\n```python\n"
        "def add_lists(list1: list, list2: list) -> int:\n"
        "    return sum(list1) + sum(list2)\n```"
    )
    task = _parse(answer)
    assert task.entry_point == "add_lists"
    assert task.tests[0] == "assert add_lists([1, 2], [3, 4]) == 7"
    assert all("add_numbers" not in test for test in task.tests)
