"""Public-only selection among blind candidates; Wilson intervals; the exact McNemar test."""

from __future__ import annotations

import pytest

from app.selection import Candidate, choose
from app.stats import mcnemar_exact, wilson


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


def test_wilson_interval_known_values() -> None:
    low, high = wilson(85, 164)
    assert low == pytest.approx(0.4418, abs=1e-3) and high == pytest.approx(0.5931, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(5, 5)[1] == 1.0


def test_exact_mcnemar_is_a_two_sided_binomial_test_of_the_discordant_pairs() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=1e-4)
