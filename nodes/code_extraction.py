"""Turn a model's answer into runnable code: pick the code block, drop its own self-tests."""

from __future__ import annotations

import ast
import re

from sandbox.python_ast import parse as parse_python

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)
_NAMED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code block that defines `entry_point` (else the longest one, else the raw text)."""
    blocks = _FENCE.findall(text)
    if not blocks:
        unclosed = re.search(r"```(?:python|py)?[ \t]*\n(.*)", text, re.DOTALL)
        blocks = [unclosed.group(1)] if unclosed else [text]
    if entry_point:
        defining = [b for b in blocks if definition_of(entry_point).search(b)]
        blocks = defining or blocks
    return max(blocks, key=len).strip()


def assert_calls(text: str, entry_point: str, limit: int) -> list[str]:
    """The distinct `assert` statements in a model's answer (its code blocks, else the raw text)
    that call `entry_point`, at most `limit`, also from inside a test function it wrote; a block
    that does not parse is read line by line, a line that does not parse is dropped."""
    found: list[str] = []
    for block in _FENCE.findall(text) or [text]:
        for statement in _statements(block):
            for node in ast.walk(statement):
                test = ast.unparse(node)
                if isinstance(node, ast.Assert) and _calls(node, entry_point) and test not in found:
                    found.append(test)
    return found[:limit]


def _statements(block: str) -> list[ast.stmt]:
    """The block's top-level statements; if it does not parse, those of each line that does."""
    try:
        return parse_python(block).body
    except SyntaxError:
        pass
    statements: list[ast.stmt] = []
    for line in block.splitlines():
        try:
            statements += parse_python(line.strip()).body
        except SyntaxError:
            continue
    return statements


def _calls(node: ast.AST, name: str) -> bool:
    """Whether `node` contains a call of the function `name`."""
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
        for n in ast.walk(node)
    )


def definition_of(name: str) -> re.Pattern[str]:
    """A pattern finding `def name(` in code."""
    return re.compile(rf"def\s+{re.escape(name)}\s*\(")


def strip_self_tests(code: str) -> str:
    """Remove top-level statements that run things (example calls, prints, asserts, __main__).

    Keeps imports, definitions and plain constant assignments. Code that does not parse is
    returned unchanged so that the sandbox reports the real syntax error.
    """
    try:
        tree = parse_python(code)
    except SyntaxError:
        return code
    kept = [node for node in tree.body if _is_definition(node)]
    if len(kept) == len(tree.body):
        return code
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, _DEFINITIONS):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign):
        value = node.value
        return (
            value is None
            or not any(isinstance(n, ast.Call) for n in ast.walk(value))
            or (_is_pure_constructor(value))
        )
    # docstrings
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _is_pure_constructor(value: ast.expr) -> bool:
    """Calls commonly used to build module constants (set(), frozenset(), re.compile(...))."""
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name | ast.Attribute)
        and ast.unparse(value.func) in {"set", "frozenset", "dict", "list", "tuple", "re.compile"}
    )


_TYPING_NAMES = frozenset(
    {"Any", "Callable", "Dict", "FrozenSet", "Iterable", "Iterator", "List", "Optional"}
    | {"Sequence", "Set", "Tuple", "Union"}
)


def with_typing_imports(code: str) -> str:
    """The code with `from typing import ...` for the typing names it uses without importing or
    defining them (a small model writes `List[int]` and forgets the import)."""
    try:
        tree = parse_python(code)
    except SyntaxError:
        return code
    bound = {
        alias.asname or alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for alias in n.names
    }
    bound |= {n.name for n in tree.body if isinstance(n, _NAMED)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & _TYPING_NAMES
    missing = sorted(used - bound)
    return f"from typing import {', '.join(missing)}\n\n{code}" if missing else code


def context_preamble(source: str, code: str, entry_point: str | None) -> str:
    """What `code` needs from the task's own source (e.g. a HumanEval prompt): its imports and the
    helper definitions it does not define itself (never the entry point)."""
    try:
        given, written = parse_python(source).body, parse_python(code).body
    except SyntaxError:
        return ""
    defined = {n.name for n in written if isinstance(n, _NAMED)}
    needed = [
        n
        for n in given
        if isinstance(n, ast.Import | ast.ImportFrom)
        or (isinstance(n, _NAMED) and n.name != entry_point and n.name not in defined)
    ]
    return "\n".join(ast.unparse(n) for n in needed)


def prepare_solution(answer: str, entry_point: str | None, context_source: str = "") -> str:
    """Extract, strip self-tests and add what the task's source provides: the code to judge."""
    code = strip_self_tests(extract_code(answer, entry_point))
    preamble = context_preamble(context_source, code, entry_point) if context_source else ""
    return f"{preamble}\n\n{code}".strip() if preamble else code
