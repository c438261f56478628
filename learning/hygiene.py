"""Prompt hygiene: a learned prompt must be a general instruction, not a note about the training
tasks. A candidate that names a training task's function, quotes one of its tests or repeats one
of its distinctive literals is refused before it can be validated or promoted."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence

from graph.state import Task
from sandbox.python_ast import parse as parse_python

MIN_NAME_LENGTH = 5
"""Function names shorter than this without an underscore (`add`, `sort`) are common words."""


def training_leak(text: str, tasks: Sequence[Task], parent: str = "") -> str | None:
    """Why `text` is specific to the training tasks, or None when it reads as general. What it
    inherits from `parent` (the prompt it was derived from) does not count: HumanEval has a
    function named `solution`, a word the seed prompt itself uses."""
    flat, inherited = _squash(text), _squash(parent)
    for task in tasks:
        name = task.entry_point
        word = rf"\b{re.escape(name)}\b"
        if (
            (len(name) >= MIN_NAME_LENGTH or "_" in name)
            and re.search(word, text)
            and not re.search(word, parent)
        ):
            return f"names the training task's function `{name}`"
        for test in task.all_tests:
            if _squash(test) in flat:
                return f"quotes a test of `{name}`"
            for literal in _distinctive_literals(test):
                squashed = _squash(literal)
                if squashed in flat and squashed not in inherited:
                    return f"repeats `{literal}` from a test of `{name}`"
    return None


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _distinctive_literals(test: str) -> Iterable[str]:
    """Literals of a test a general instruction would not contain: strings of 4+ characters,
    numbers of 3+ digits, and collections of 2+ items."""
    try:
        tree = parse_python(test)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str) and len(value.strip()) >= 4:
                yield repr(value)
            elif (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and len(str(abs(value)).replace(".", "")) >= 3
            ):
                yield str(value)
        elif isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            size = len(node.keys) if isinstance(node, ast.Dict) else len(node.elts)
            if size >= 2:
                yield ast.unparse(node)
