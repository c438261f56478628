"""Public-only selection among blind candidates, and by model-written tests (CodeT)."""

from __future__ import annotations

import pytest

from graph.selection import Candidate, choose, choose_by_written_tests


def test_the_candidate_passing_most_public_tests_is_chosen() -> None:
    chosen = choose(
        [Candidate("def f(): return 1", 1, 2, True), Candidate("def f(): return 2", 2, 2, True)]
    )
    assert chosen == 1


def test_code_that_does_not_load_loses_to_code_that_does() -> None:
    assert choose([Candidate("def f(:", 0, 0, False), Candidate("def f(): pass", 0, 0, True)]) == 1


def test_on_a_tie_agreement_decides_then_the_greedy_answer() -> None:
    a, b = "def f(x):\n    return x", "def f(x):\n    return -x"
    same_as_b = "def f(x):  # layout differs\n    return (-x)"
    assert (
        choose(
            [Candidate(a, 1, 1, True), Candidate(b, 1, 1, True), Candidate(same_as_b, 1, 1, True)]
        )
        == 1
    )
    assert choose([Candidate(a, 1, 1, True), Candidate(b, 1, 1, True)]) == 0


def _written(code: str, public: int, passed: set[int]) -> Candidate:
    return Candidate(code, public, 2, True, frozenset(passed))


def test_dual_agreement_picks_the_group_most_consistent_with_the_written_tests() -> None:
    # one candidate passes all 3 written tests (score 1 x 3); two different codes pass the same
    # 2 (score 2 x 2): the pair wins, where `choose` would take the greedy answer
    candidates = [
        _written("def f(x):\n    return x", 2, {0, 1, 2}),
        _written("def f(x):\n    return x + 0", 2, {0, 1}),
        _written("def f(x):\n    return 0 + x", 2, {0, 1}),
    ]
    assert choose(candidates) == 0
    assert choose_by_written_tests(candidates) == 1


def test_public_tests_still_come_before_the_written_ones() -> None:
    candidates = [
        _written("def f(x):\n    return x", 2, set()),
        _written("def f(x):\n    return 1", 1, {0, 1, 2}),
        _written("def f(x):\n    return 2", 1, {0, 1, 2}),
    ]
    assert choose_by_written_tests(candidates) == 0


def test_without_usable_written_tests_the_choice_is_the_public_one() -> None:
    a, b = "def f(x):\n    return x", "def f(x):\n    return -x"
    candidates = [Candidate(a, 1, 1, True), Candidate(b, 1, 1, True), Candidate(b, 1, 1, True)]
    assert choose_by_written_tests(candidates) == choose(candidates) == 1
    with pytest.raises(ValueError):
        choose_by_written_tests([])
