"""Parse the producer model's JSON answer into a Task, tolerating the usual small-model slips."""

from __future__ import annotations

from typing import Any

import json_repair
from pydantic import ValidationError

from graph.state import Task
from nodes.code_extraction import extract_code


class TaskParseError(ValueError):
    """The answer does not describe a usable task."""


def parse_task(answer: str, *, difficulty: int, task_id: str) -> Task:
    """A Task from the model's JSON answer (repairing broken JSON where possible)."""
    data = json_repair.loads(answer)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise TaskParseError("the answer is not a JSON object")
    tests = _tests(data.get("tests"))
    reference = data.get("reference_solution") or ""
    if not isinstance(reference, str) or "def " not in reference:
        raise TaskParseError("reference_solution is missing or has no function")
    entry_point = str(data.get("entry_point") or "").strip()
    if not entry_point:
        raise TaskParseError("entry_point is missing")
    try:
        return Task(
            task_id=task_id,
            statement=str(data.get("statement") or "").strip(),
            signature=str(data.get("signature") or f"def {entry_point}(...)").strip().rstrip(":"),
            entry_point=entry_point,
            tests=tests,
            category=str(data.get("category") or "general").strip().lower() or "general",
            difficulty=_clamp(data.get("difficulty"), default=difficulty),
            reference_solution=extract_code(reference, entry_point),
        )
    except ValidationError as exc:
        raise TaskParseError(f"invalid task: {exc.errors()[0]['msg']}") from exc


def _tests(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TaskParseError("tests must be a list of assert statements")
    tests = [t.strip() for t in value if isinstance(t, str) and t.strip().startswith("assert")]
    if len(tests) < 2:
        raise TaskParseError("at least two assert tests are needed")
    return tests


def _clamp(value: Any, *, default: int) -> int:
    try:
        return min(10, max(1, int(value)))
    except (TypeError, ValueError):
        return default
