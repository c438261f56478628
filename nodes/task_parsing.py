"""Parse the producer model's answer into a Task, tolerating the usual small-model slips.

The answer is a JSON object (the task's fields) followed by the reference solution in a ```python
block: code inside a JSON string loses its indentation too easily with small models. A
`reference_solution` key in the JSON (the earlier format) is still read when no block gives one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair
from pydantic import ValidationError

from graph.state import Task
from nodes.code_extraction import (
    definition_of,
    extract_code,
    strip_self_tests,
    with_typing_imports,
)


class TaskParseError(ValueError):
    """The answer does not describe a usable task."""


_NAME = re.compile(r"\s*(?:async\s+)?(?:def\s+)?([A-Za-z_]\w*)")
_CODE_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE_MARK = re.compile(r"```[A-Za-z]*")
_TRIPLE_QUOTED = re.compile(r'"""(.*?)"""', re.DOTALL)
_TEST_LINE = re.compile(r'^(\s*"assert\b.*?)[\s,]*$', re.MULTILINE)


def parse_task(answer: str, *, difficulty: int, task_id: str) -> Task:
    """A Task from the model's answer (repairing broken JSON where possible)."""
    blocks = _CODE_BLOCK.findall(answer)
    data = _task_fields(_CODE_BLOCK.sub("", answer))
    tests = _tests(data.get("tests"))
    names = [n for n in (_identifier(data.get(k)) for k in ("entry_point", "signature")) if n]
    if not names:
        raise TaskParseError("entry_point is missing")
    # The entry point a code block defines wins: the 0.5B sometimes names another function in
    # "entry_point" (and its tests) than the one its signature and reference define.
    entry_point = next(
        (n for n in names if any(definition_of(n).search(b) for b in blocks)), names[0]
    )
    if entry_point != names[0]:
        called = re.compile(rf"\b{re.escape(names[0])}\s*\(")
        tests = [called.sub(f"{entry_point}(", test) for test in tests]
    reference = _reference(blocks, data, entry_point)
    try:
        return Task(
            task_id=task_id,
            statement=str(data.get("statement") or "").strip(),
            signature=_signature(data.get("signature"), entry_point),
            entry_point=entry_point,
            tests=tests,
            category=str(data.get("category") or "general").strip().lower() or "general",
            difficulty=_clamp(data.get("difficulty"), default=difficulty),
            reference_solution=reference,
        )
    except ValidationError as exc:
        raise TaskParseError(f"invalid task: {exc.errors()[0]['msg']}") from exc


def _task_fields(text: str) -> dict[str, Any]:
    """The JSON object in what is left of the answer without its code blocks and fences (a
    ```json block may be left unclosed)."""
    text = _FENCE_MARK.sub("", text)
    # Python's triple-quoted strings, which small models put into JSON, as JSON strings
    text = _TRIPLE_QUOTED.sub(lambda m: json.dumps(m.group(1)), text)
    text = _TEST_LINE.sub(_closed_test_string, text)
    start, end = text.find("{"), text.rfind("}")
    data = json_repair.loads(text[start : end + 1] if 0 <= start < end else text)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise TaskParseError("the answer has no JSON object with the task")
    return data


def _closed_test_string(line: re.Match[str]) -> str:
    """A test string on its own line, closed when the model forgot its closing quote."""
    body = line.group(1)
    return f"{body}," if body.endswith('"') else f'{body}",'


def _reference(blocks: list[str], data: dict[str, Any], entry_point: str) -> str:
    """The reference solution: the longest code block defining the entry point, else a JSON field
    holding the function (`reference_solution`, the earlier format, or a `signature` with a body)."""
    defines = definition_of(entry_point)
    in_json = (data.get(key) for key in ("reference_solution", "signature"))
    candidates = [b for b in blocks if defines.search(b)] or [
        extract_code(value, entry_point)
        for value in in_json
        if isinstance(value, str) and defines.search(value) and "\n" in value.strip()
    ][:1]
    if not candidates:
        raise TaskParseError(
            f"no reference solution defining {entry_point}(): put it in a ```python block"
        )
    return with_typing_imports(strip_self_tests(max(candidates, key=len).strip()))


def _signature(value: Any, entry_point: str) -> str:
    """The def line (a signature given with a body keeps only its def line)."""
    text = str(value or "").strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("def ")), text)
    return (line or f"def {entry_point}(...)").rstrip(":")


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
