"""Is a candidate's validation gain more than luck? A paired, one-sided exact sign test."""

from __future__ import annotations

import math
from collections.abc import Sequence


def paired_gain_p(candidate: Sequence[float], base: Sequence[float]) -> float:
    """One-sided p-value that `candidate` beats `base` on the same items: an exact sign test on
    the items where they differ (ties carry no evidence). 1.0 when nothing differs."""
    if len(candidate) != len(base):
        raise ValueError("a paired test needs scores of the same items")
    wins = sum(c > b for c, b in zip(candidate, base, strict=True))
    losses = sum(c < b for c, b in zip(candidate, base, strict=True))
    if wins + losses == 0:
        return 1.0
    return sign_test_p(wins, wins + losses)


def sign_test_p(wins: int, trials: int) -> float:
    """P(X >= wins) for X ~ Binomial(trials, 1/2), exactly (what scipy's one-sided `binomtest`
    gives, without importing scipy: seconds of a run's start-up for one sum)."""
    return sum(math.comb(trials, k) for k in range(wins, trials + 1)) / 2**trials
