"""`ast.parse` that many threads may call at once.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: when a
garbage collection during one thread's parse runs Python code and another thread parses
meanwhile, either parse can fail with a spurious ``SystemError: AST constructor recursion
depth mismatch`` (python/cpython#106905, fixed only in later minor versions). The mesh parses
model-written code in worker threads (producer requests in flight together, the LangGraph
server's runs), so every parse of ours goes through one lock.
"""

from __future__ import annotations

import ast
import threading
from typing import Literal, overload

_PARSING = threading.Lock()


@overload
def parse(source: str, mode: Literal["exec"] = "exec") -> ast.Module: ...


@overload
def parse(source: str, mode: Literal["eval"]) -> ast.Expression: ...


def parse(source: str, mode: Literal["exec", "eval"] = "exec") -> ast.Module | ast.Expression:
    """`ast.parse(source, mode=mode)`, one thread at a time; raises SyntaxError as it does."""
    with _PARSING:
        return ast.parse(source, mode="eval") if mode == "eval" else ast.parse(source)
