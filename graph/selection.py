"""Choosing one answer among K blind candidates with public information only: the public tests
passed (and whether the code loads), then agreement between candidates, then the greedy one; or,
CodeT-style, by agreement between the candidates and tests the model wrote itself."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.python_ast import parse as parse_python


@dataclass(frozen=True)
class Candidate:
    """One sampled answer and what the public tests made of it (no hidden test involved)."""

    code: str
    public_passed: int
    public_total: int
    loads: bool
    written_passed: frozenset[int] = frozenset()
    """Which of the model-written tests (by index) it passed (CodeT; none when not run)."""


def normalised(code: str) -> str:
    """The code's syntax tree without formatting and comments (the raw text if it does not
    parse): equal for candidates that differ only in layout."""
    try:
        return ast.dump(parse_python(code))
    except SyntaxError:
        return code.strip()


def choose(candidates: list[Candidate]) -> int:
    """The index of the candidate to submit: most public tests passed; among those, the one
    whose code most other candidates agree with; then the earliest (the greedy answer)."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    return max(range(len(candidates)), key=_public_rank(candidates))


def choose_by_written_tests(candidates: list[Candidate]) -> int:
    """The index of the candidate to submit by CodeT's dual agreement (Chen et al. 2022) among
    those ranking first on public tests (loads, public tests passed): candidates passing the same
    set of model-written tests form a group scored (candidates in it) x (tests in the set); the
    best group wins, ties and a zero score going to `choose`'s ranking. Without usable written
    tests this is `choose`."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    rank = _public_rank(candidates)
    best = max((c.loads, c.public_passed) for c in candidates)
    eligible = [i for i, c in enumerate(candidates) if (c.loads, c.public_passed) == best]
    groups = Counter(candidates[i].written_passed for i in eligible)

    def score(index: int) -> tuple[int, tuple[int, int, int, int]]:
        passed = candidates[index].written_passed
        return groups[passed] * len(passed), rank(index)

    return max(eligible, key=score)


def _public_rank(candidates: list[Candidate]) -> Callable[[int], tuple[int, int, int, int]]:
    """`choose`'s ranking key of a candidate's index: loads, public tests passed, how many
    candidates share its code, earliest first."""
    votes = Counter(normalised(c.code) for c in candidates)

    def rank(index: int) -> tuple[int, int, int, int]:
        c = candidates[index]
        return (int(c.loads), c.public_passed, votes[normalised(c.code)], -index)

    return rank
