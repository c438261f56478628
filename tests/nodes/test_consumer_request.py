"""The consumer's request: recalled experience first, the task itself last."""

from __future__ import annotations

from nodes.prompts import consumer_request


def test_without_experience_the_request_is_the_task() -> None:
    request = consumer_request("Add two numbers.", "def add(a, b)", "add")
    assert request.startswith("Task:\nAdd two numbers.") and "experience" not in request


def test_recalled_experience_comes_before_the_task_and_is_marked_as_other_tasks() -> None:
    experience = "Fixes that worked on similar tasks:\n- def sub(a, b): return a - b"
    request = consumer_request("Add two numbers.", "def add(a, b)", "add", experience)
    assert request.startswith("From experience (notes from other, similar tasks;")
    assert "do not copy their code" in request
    assert request.index(experience) < request.index("Task:\nAdd two numbers.")
    assert request.rstrip().endswith("def add(a, b)")
