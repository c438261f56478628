"""Is a candidate's validation gain more than luck? A paired, one-sided exact sign test."""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import binomtest


def paired_gain_p(candidate: Sequence[float], base: Sequence[float]) -> float:
    """One-sided p-value that `candidate` beats `base` on the same items: an exact sign test on
    the items where they differ (ties carry no evidence). 1.0 when nothing differs."""
    if len(candidate) != len(base):
        raise ValueError("a paired test needs scores of the same items")
    wins = sum(c > b for c, b in zip(candidate, base, strict=True))
    losses = sum(c < b for c, b in zip(candidate, base, strict=True))
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)
