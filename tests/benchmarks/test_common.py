"""The helper every benchmark writes through: small-sample percentiles and the run record."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from benchmarks import common


def test_percentiles_stay_within_the_sample_for_small_samples() -> None:
    samples = [float(x) for x in range(1, 21)]  # 20 samples: exclusive quantiles overshoot
    assert common.percentile(samples, 99) <= max(samples)
    assert common.percentile(samples, 0) == 1.0 and common.percentile(samples, 100) == 20.0
    inclusive = statistics.quantiles(samples, n=100, method="inclusive")
    assert common.percentile(samples, 90) == pytest.approx(inclusive[89])
    assert common.percentile([7.0], 99) == 7.0
    summary = common.latency_summary([1.0, 2.0, 100.0])
    assert summary["p99_ms"] <= summary["max_ms"] == 100.0


def test_every_result_records_commit_machine_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = iter([[0.5, 0.4, 0.3], [9.0, 3.0, 1.0]])
    monkeypatch.setattr(common, "load_average", lambda: next(loads))
    run = common.begin(runs=3)
    path = common.write_json(tmp_path / "r.json", {"figure": 1}, run)
    record = json.loads(path.read_text())["run"]
    assert record["commit"] != "unknown" and len(record["commit"].split("-")[0]) == 40
    assert record["machine"]["cpu"] and record["machine"]["cores"] >= 1
    assert record["settings"] == {"runs": 3}
    assert record["load_average_before"] == [0.5, 0.4, 0.3]
    assert record["load_average_after"] == [9.0, 3.0, 1.0]
    assert record["loaded"] is (record["machine"]["cores"] < 9.0)
    assert json.loads(path.read_text())["figure"] == 1


def test_the_recorded_commit_is_the_one_the_run_began_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(common, "commit", lambda: next(commits))
    run = common.begin()
    record = json.loads(common.write_json(tmp_path / "r.json", {}, run).read_text())["run"]
    assert record["commit"] == "a" * 40
