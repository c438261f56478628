"""Wilson intervals; the exact McNemar test."""

from __future__ import annotations

import pytest

from app.stats import mcnemar_exact, wilson


def test_wilson_interval_known_values() -> None:
    low, high = wilson(85, 164)
    assert low == pytest.approx(0.4418, abs=1e-3) and high == pytest.approx(0.5931, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(5, 5)[1] == 1.0


def test_exact_mcnemar_is_a_two_sided_binomial_test_of_the_discordant_pairs() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=1e-4)
