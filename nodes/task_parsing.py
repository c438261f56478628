"""Parse the producer model's answer into a Task, tolerating the usual small-model slips.

The answer is a JSON object (the task's fields) followed by the reference solution in a ```python
block: code inside a JSON string loses its indentation too easily with small models. A
`reference_solution` key in the JSON (the earlier format) is still read when no block gives one.
"""

from __future__ import annotations

import re
from typing import Any

import json_repair
from pydantic import ValidationError

from graph.state import Task
from nodes.code_extraction import extract_code, strip_self_tests


class TaskParseError(ValueError):
    """The answer does not describe a usable task."""


_JSON_FENCE = re.compile(r"```json[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_NAME = re.compile(r"\s*(?:async\s+)?(?:def\s+)?([A-Za-z_]\w*)")
_CODE_FENCE = re.compile(r"```(?:python|py)[ \t]*\n.*?(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def parse_task(answer: str, *, difficulty: int, task_id: str) -> Task:
    """A Task from the model's answer (repairing broken JSON where possible)."""
    data = _task_fields(answer)
    tests = _tests(data.get("tests"))
    entry_point = _identifier(data.get("entry_point")) or _identifier(data.get("signature"))
    if not entry_point:
        raise TaskParseError("entry_point is missing")
    reference = _reference(answer, data, entry_point)
    try:
        return Task(
            task_id=task_id,
            statement=str(data.get("statement") or "").strip(),
            signature=str(data.get("signature") or f"def {entry_point}(...)").strip().rstrip(":"),
            entry_point=entry_point,
            tests=tests,
            category=str(data.get("category") or "general").strip().lower() or "general",
            difficulty=_clamp(data.get("difficulty"), default=difficulty),
            reference_solution=reference,
        )
    except ValidationError as exc:
        raise TaskParseError(f"invalid task: {exc.errors()[0]['msg']}") from exc


def _task_fields(answer: str) -> dict[str, Any]:
    """The JSON object: a ```json block, else the answer without its code blocks."""
    fenced = _JSON_FENCE.search(answer)
    data = json_repair.loads(fenced.group(1) if fenced else _CODE_FENCE.sub("", answer))
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise TaskParseError("the answer has no JSON object with the task")
    return data


def _reference(answer: str, data: dict[str, Any], entry_point: str) -> str:
    """The reference solution: the code block defining the entry point, else the JSON key."""
    defines = re.compile(rf"def\s+{re.escape(entry_point)}\s*\(")
    without_json = _JSON_FENCE.sub("", answer)
    if "```" in without_json:
        block = extract_code(without_json, entry_point)
        if defines.search(block):
            return strip_self_tests(block)
    legacy = data.get("reference_solution")
    if isinstance(legacy, str) and defines.search(legacy):
        return strip_self_tests(extract_code(legacy, entry_point))
    raise TaskParseError(
        f"no reference solution defining {entry_point}(): put it in a ```python block"
    )


def _identifier(value: Any) -> str:
    """The function name in an entry point or signature ("add(3, 5)", "def add(a, b)" -> "add")."""
    found = _NAME.match(str(value or ""))
    return found.group(1) if found else ""


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
