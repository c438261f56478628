"""The expert-iteration benchmark's report: rates per split and arm, every adapter paired against
the base, the A/A control, and the goal on the test split in `learning_test_split.json`'s shape.
(The harness itself needs the real model and hours: its parts are tested in tests/learning.)"""

from __future__ import annotations

from pathlib import Path

from benchmarks import learning_weights
from benchmarks.resumable import ResumableRun
from graph.state import Task
from learning.sft_data import Sample


def _run(tmp_path: Path, test_passes: dict[str, list[bool]], kind: str = "eval") -> ResumableRun:
    run = ResumableRun(tmp_path / "run", {"rounds": "1", "loop_attempts": "3"})
    run.add("samples/1", {"kind": "samples", "round": 1, "samples": 8, "examples": 3,
                          "examples_data": [], "per_task_passes": {}})  # fmt: skip
    run.add("round/1", {"kind": "round", "round": 1, "training": {"steps": 2, "seconds": 9.0}})
    for arm, passes in test_passes.items():
        for number, passed in enumerate(passes):
            task = f"HumanEval-{number}"
            run.add(f"{kind}/{arm}/{task}", {"kind": kind, "split": "test", "arm": arm,
                                             "task_id": task, "passed": passed, "reward": 0.5,
                                             "attempts": 1 if passed else 3, "tokens": 10,
                                             "seconds": 1.0})  # fmt: skip
    return run


def test_the_report_pairs_each_adapter_with_the_base_and_judges_the_goal(tmp_path: Path) -> None:
    base = [True] * 10 + [False] * 10
    better = [True] * 10 + [True] * 8 + [False] * 2  # +8 tasks of 20: +40 points
    run = _run(tmp_path, {"base": base, "base-again": base, "consumer-r1": better})
    payload = learning_weights.report(run, None)
    test = payload["splits"]["test"]
    assert test["n"] == 20
    assert test["arms"]["base"]["solved"] == 10 and test["arms"]["consumer-r1"]["solved"] == 18
    difference = payload["difference"]["pass_at_1"]
    assert payload["difference"]["adapter"] == "consumer-r1"
    assert difference["difference"] == 0.4 and difference["only_other"] == 8
    assert difference["mcnemar_p"] < 0.05
    assert payload["goal"] == {"points": learning_weights.GOAL_POINTS, "met": True}
    assert payload["aa_control"]["test"]["difference"] == 0.0
    moonshot = payload["moonshot"]  # against the stored 1.5B run, on the problems both ran
    assert moonshot["n"] == moonshot["adapter"]["n"] == moonshot["qwen2.5-coder-1.5b"]["n"] > 0
    assert payload["rounds"][0]["sampling"] == {"round": 1, "samples": 8, "examples": 3}
    assert payload["loop"] is None  # no loop row yet
    learning_weights.chart(payload, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_a_gain_inside_the_noise_misses_the_goal(tmp_path: Path) -> None:
    base = [True] * 10 + [False] * 10
    slightly = [True] * 11 + [False] * 9
    run = _run(tmp_path, {"base": base, "consumer-r1": slightly})
    payload = learning_weights.report(run, None)
    assert payload["difference"]["pass_at_1"]["difference"] == 0.05
    assert payload["goal"]["met"] is False  # +5 points but McNemar p = 1.0
    assert payload["aa_control"] == {"test": None}


def test_a_rounds_samples_kept_one_task_at_a_time_read_back_whole(tmp_path: Path) -> None:
    run = ResumableRun(tmp_path / "run", {"rounds": "1"})
    task = Task(
        task_id="p1", statement="Add.", signature="def add(a, b)", entry_point="add", tests=[]
    )
    messages = [{"role": "user", "content": "Add."}, {"role": "assistant", "content": "def add"}]
    samples = [Sample(f"r/{i}", task, messages, passed=i == 0, reward=0.5 * i) for i in range(2)]
    learning_weights.keep_samples(run, 1, samples)
    assert learning_weights.stored_samples(run, 2) == []
    reopened = ResumableRun(tmp_path / "run", {"rounds": "1"})
    assert learning_weights.stored_samples(reopened, 1) == samples


def test_the_loop_is_reported_beside_greedy_with_its_own_control_and_calls(
    tmp_path: Path,
) -> None:
    base = [True] * 12 + [False] * 8
    worse = [True] * 9 + [False] * 11
    run = _run(tmp_path, {"base": base, "base-again": base, "consumer-r2": worse}, kind="loop")
    payload = learning_weights.report(run, None)
    assert payload["splits"] == {} and payload["difference"]["pass_at_1"] is None
    loop = payload["loop"]
    assert loop["attempts"] == 3
    assert loop["splits"]["test"]["arms"]["consumer-r2"]["solved"] == 9
    assert loop["difference"]["adapter"] == "consumer-r2"
    assert loop["difference"]["pass_at_1"]["difference"] == -0.15
    assert loop["aa_control"]["test"]["difference"] == 0.0
    assert loop["calls_per_task"] == {"base": 1.8, "base-again": 1.8, "consumer-r2": 2.1}
    assert payload["rounds"][0]["cost"]["wall_hours"] == 0.0
    learning_weights.chart(payload, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0
