"""Choosing one answer among K blind candidates with public information only: the public tests
passed (and whether the code loads), then agreement between candidates, then the greedy one."""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """One sampled answer and what the public tests made of it (no hidden test involved)."""

    code: str
    public_passed: int
    public_total: int
    loads: bool


def normalised(code: str) -> str:
    """The code's syntax tree without formatting and comments (the raw text if it does not
    parse): equal for candidates that differ only in layout."""
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return code.strip()


def choose(candidates: list[Candidate]) -> int:
    """The index of the candidate to submit: most public tests passed; among those, the one
    whose code most other candidates agree with; then the earliest (the greedy answer)."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    votes = Counter(normalised(c.code) for c in candidates)

    def rank(index: int) -> tuple[int, int, int, int]:
        c = candidates[index]
        return (int(c.loads), c.public_passed, votes[normalised(c.code)], -index)

    return max(range(len(candidates)), key=rank)
