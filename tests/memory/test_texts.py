"""How memories are written as text (pure functions, no mem0)."""

from __future__ import annotations

from memory.texts import (
    best_practice_text,
    code_diff,
    fix_recipe_text,
    one_line,
    summarize_error,
    task_text,
)


def test_summarize_error_takes_the_exception_line_of_a_traceback() -> None:
    error = (
        "Traceback (most recent call last):\n"
        '  File "solution.py", line 3, in f\n'
        "    return xs[i]\n"
        "IndexError: list index out of range\n"
    )
    assert summarize_error(error) == "IndexError: list index out of range"


def test_summarize_error_keeps_the_first_lines_of_sandbox_feedback() -> None:
    feedback = (
        "FAILED 'assert add(1, 2) == 3': AssertionError\n"
        "FAILED 'assert add(0, 0) == 0': AssertionError\n"
        "FAILED 'assert add(-1, 1) == 0': AssertionError\n"
        "0/3 tests passed.\n"
    )
    summary = summarize_error(feedback)
    assert summary.startswith("FAILED 'assert add(1, 2) == 3'")
    assert "0/3 tests passed" not in summary
    assert len(summarize_error("x" * 5000)) <= 300


def test_code_diff_is_a_short_unified_diff_without_headers() -> None:
    before = "def f(x):\n    y = x\n    return y\n"
    after = "def f(x):\n    y = x + 1\n    return y\n"
    diff = code_diff(before, after)
    assert "-    y = x" in diff and "+    y = x + 1" in diff
    assert "---" not in diff and "+++" not in diff
    assert code_diff(before, before) == "(no code change)"
    many = code_diff("", "\n".join(f"line{i}" for i in range(200)))
    assert "more diff lines" in many and len(many) <= 1500


def test_texts_start_with_the_statement() -> None:
    statement = "Reverse   a\nstring."
    assert task_text(statement, "strings", 2) == "Task [strings, difficulty 2]: Reverse a string."
    recipe = fix_recipe_text(statement, "AssertionError", "return s", "return s[::-1]")
    assert recipe.startswith("Fix recipe for task: Reverse a string.\nError: AssertionError\n")
    assert "+return s[::-1]" in recipe
    practice = best_practice_text(statement, "Idiomatic slicing.", "def r(s):\n    return s[::-1]")
    assert practice.startswith("Best practice for task: Reverse a string.\nReviewer: Idiomatic")
    assert one_line("a " * 1000, 50).endswith("...")
