"""A learned prompt must not carry the training tasks (the APO v1.1 lesson: a critique about
`strlen` and a literal test case got promoted)."""

from __future__ import annotations

from graph.state import Task
from learning.hygiene import training_leak

TASKS = [
    Task(
        statement="Return the length of a string.",
        signature="def strlen(string: str) -> int",
        entry_point="strlen",
        tests=["assert strlen('') == 0"],
        hidden_tests=["assert strlen('abcde') == 5", "assert largest([1, 5, 3]) == 5"],
    ),
    Task(
        statement="Largest divisor.",
        signature="def largest_divisor(n: int) -> int",
        entry_point="largest_divisor",
        tests=["assert largest_divisor(15) == 5", "assert largest_divisor(100) == 50"],
    ),
]


def test_general_instructions_pass() -> None:
    text = (
        "Write the complete function with its imports. Handle empty inputs and edge cases, "
        "keep the exact name and signature, and return values instead of printing them."
    )
    assert training_leak(text, TASKS) is None


def test_a_training_function_name_is_refused() -> None:
    assert "largest_divisor" in (
        training_leak("Remember that largest_divisor must loop downwards.", TASKS) or ""
    )
    assert "strlen" in (training_leak("For strlen, count characters.", TASKS) or "")


def test_a_quoted_test_or_literal_is_refused() -> None:
    quoted = [
        Task(statement="s", signature="def f(x)", entry_point="f", tests=["assert f(7) == 8"])
    ]
    assert "quotes a test" in (training_leak("Make sure assert f(7) == 8 holds", quoted) or "")
    assert "'abcde'" in (training_leak("Check inputs like 'abcde' carefully.", TASKS) or "")
    assert "100" in (training_leak("Numbers such as 100 need care.", TASKS) or "")
    assert "[1, 5, 3]" in (training_leak("e.g. a list like [1,5,3]", TASKS) or "")


def test_what_the_parent_prompt_already_said_does_not_count() -> None:
    solution = [
        Task(statement="s", signature="def solution(lst)", entry_point="solution",
             tests=["assert solution([5, 8, 7, 1]) == 12"])
    ]  # fmt: skip
    seed = "You are an expert Python programmer. Write a correct, readable solution."
    edit = seed + " Handle empty inputs before anything else."
    assert training_leak(edit, solution, seed) is None  # HumanEval/121 is named `solution`
    assert "solution" in (training_leak(edit, solution) or "")
    assert "names" in (training_leak(edit + " Call strlen.", TASKS, seed) or "")
