"""The text each kind of memory is stored (and embedded) as.

Every text starts with the task statement, so a memory is found by the statement of a similar task
(the embedder reads at most 256 word pieces; what matters most comes first).
"""

from __future__ import annotations

import difflib
import re

STATEMENT_CHARS = 600
ERROR_CHARS = 300
DIFF_LINES = 40
DIFF_CHARS = 1500
CODE_LINES = 30
CRITIQUE_CHARS = 600

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt)\b")


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def one_line(text: str, limit: int = STATEMENT_CHARS) -> str:
    """`text` with its whitespace collapsed to single spaces, capped at `limit` characters."""
    return _clip(" ".join(text.split()), limit)


def summarize_error(error: str, limit: int = ERROR_CHARS) -> str:
    """The gist of a failure: a traceback's exception line, else the first lines of the message."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback") for line in lines):
        exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
        return _clip(exceptions[-1] if exceptions else lines[-1], limit)
    return _clip(" | ".join(lines[:3]), limit)


def code_diff(before: str, after: str, max_lines: int = DIFF_LINES, limit: int = DIFF_CHARS) -> str:
    """A compact unified diff (one line of context, no file headers) from `before` to `after`."""
    lines = list(
        difflib.unified_diff(
            before.strip().splitlines(), after.strip().splitlines(), lineterm="", n=1
        )
    )
    body = [line for line in lines if not line.startswith(("---", "+++"))]
    if not body:
        return "(no code change)"
    if len(body) > max_lines:
        body = [*body[:max_lines], f"... ({len(body) - max_lines} more diff lines)"]
    return _clip("\n".join(body), limit)


def code_excerpt(code: str, max_lines: int = CODE_LINES) -> str:
    """The first `max_lines` lines of `code`."""
    lines = code.strip().splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"# ... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def task_text(statement: str, category: str, difficulty: int) -> str:
    """A produced task, as stored for the producer."""
    return f"Task [{category}, difficulty {difficulty}]: {one_line(statement)}"


def fix_recipe_text(statement: str, error: str, failed_code: str, fixed_code: str) -> str:
    """A failure -> fix pair: the task, the error, and what changed (a short unified diff)."""
    return (
        f"Fix recipe for task: {one_line(statement)}\n"
        f"Error: {summarize_error(error) or 'unknown'}\n"
        f"What changed:\n{code_diff(failed_code, fixed_code)}"
    )


def failure_text(statement: str, error: str) -> str:
    """A failed attempt (kept even when no fix follows)."""
    return f"Failure on task: {one_line(statement)}\nError: {summarize_error(error) or 'unknown'}"


def best_practice_text(statement: str, critique: str, code: str) -> str:
    """What the reviewer praised, with the code it praised."""
    return (
        f"Best practice for task: {one_line(statement)}\n"
        f"Reviewer: {one_line(critique, CRITIQUE_CHARS)}\n"
        f"Code:\n{code_excerpt(code)}"
    )
