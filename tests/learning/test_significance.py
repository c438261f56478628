"""The paired sign test: exact binomial tail probabilities, the same as scipy's `binomtest`."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from learning.significance import paired_gain_p, sign_test_p


@pytest.mark.parametrize(("wins", "trials"), [(0, 1), (1, 1), (3, 5), (8, 9), (10, 10), (40, 64)])
def test_the_tail_is_scipys(wins: int, trials: int) -> None:
    expected = binomtest(wins, trials, 0.5, alternative="greater").pvalue
    assert sign_test_p(wins, trials) == pytest.approx(expected, rel=1e-12)


def test_ties_carry_no_evidence() -> None:
    assert paired_gain_p([1.0, 0.5, 0.0], [1.0, 0.5, 0.0]) == 1.0
    # 2 wins, 0 losses, 1 tie: P(X >= 2 | n = 2) = 1/4
    assert paired_gain_p([1.0, 1.0, 0.3], [0.0, 0.0, 0.3]) == 0.25


def test_scores_of_different_items_are_refused() -> None:
    with pytest.raises(ValueError, match="same items"):
        paired_gain_p([1.0], [1.0, 0.0])
