"""The docker overhead benchmark's interval: a paired bootstrap of the ratio of medians."""

from __future__ import annotations

from benchmarks.docker_overhead import ratio_interval


def test_the_ratio_interval_brackets_the_ratio_of_medians() -> None:
    local = [30.0 + (i % 7) for i in range(20)]
    docker = [value * 8 + (i % 3) for i, value in enumerate(local)]
    low, high = ratio_interval(docker, local)
    assert 7.5 < low <= 8.0 <= high < 8.6
