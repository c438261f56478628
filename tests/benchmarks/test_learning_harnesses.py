"""The three measurement harnesses of issue #16 on a few tasks with the scripted TEST DOUBLE
(`--llm scripted`): each writes its JSON and chart, and an interrupted run resumes with the same
command, running only what is missing (a segment per invocation counts the rows it added)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import learning_long_run, learning_test_split, memory_recurring
from benchmarks.learning_plan import parse_plan
from benchmarks.paired_runs import paired_rates
from benchmarks.resumable import ArgumentsChanged, ResumableRun
from benchmarks.task_stream import generate, load_stream
from foundation.settings import Settings
from nodes.prompts import SEED_PROMPTS
from prompt_registry import PromptRegistry


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tasks the real producer node invented with the scripted double, frozen to a file."""
    folder = tmp_path_factory.mktemp("stream")
    path = folder / "stream.jsonl"
    generate(Settings(llm="scripted", data_dir=folder / "data"), path, 6, use_memory=False)
    return path


def _drop_last_rows(run_dir: Path, count: int) -> list[str]:
    """Remove the last `count` rows, as if the run had been killed before them; their keys."""
    rows = (run_dir / "rows.jsonl").read_text().splitlines()
    (run_dir / "rows.jsonl").write_text("\n".join(rows[:-count]) + "\n")
    return [json.loads(row)["key"] for row in rows[-count:]]


def _segments(payload: dict[str, Any]) -> list[int]:
    return [segment["rows_added"] for segment in payload["segments"]]


def test_a_stream_is_frozen_and_generation_continues(tmp_path: Path, stream: Path) -> None:
    tasks = load_stream(stream)
    assert len(tasks) == 6 and all(t.hidden_tests and t.reference_solution for t in tasks)
    copy = tmp_path / "copy.jsonl"
    lines = stream.read_text().splitlines()
    copy.write_text("\n".join(lines[:4]) + "\n")
    settings = Settings(llm="scripted", data_dir=tmp_path / "data")
    generate(settings, copy, len(load_stream(copy)) + 1, use_memory=False)
    again = copy.read_text().splitlines()
    assert again[:4] == lines[:4] and len(again) == 5  # one more request, the rest kept


def test_concurrent_generation_keeps_every_request_once(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    settings = Settings(llm="scripted", data_dir=tmp_path / "data")
    generate(settings, path, 5, use_memory=False, concurrency=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["request"] for r in rows) == list(range(len(rows)))  # each index once
    assert 5 <= sum(r["accepted"] for r in rows) <= 5 + 2  # those in flight at the count kept
    assert len(load_stream(path)) == sum(r["accepted"] for r in rows)


def test_memory_recurring_pairs_the_arms_and_resumes(tmp_path: Path, stream: Path) -> None:
    argv = ["--llm", "scripted", "--stream", str(stream), "--limit", "3",
            "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path)]  # fmt: skip
    first = memory_recurring.main(argv)
    assert set(first["arms"]) == {"without_memory", "with_memory"} and first["tasks"] == 3
    for arm in first["arms"].values():
        low, high = arm["pass_rate"]["ci95"]
        assert 0 <= low <= arm["pass_rate"]["rate"] <= high <= 1
        assert arm["mean_attempts_solved"] >= 1
        assert set(arm["by_recurrence"]) == {"first_of_category", "recurring"}
    change = first["attempts_per_solve_change"]
    assert {"relative_change", "ci95", "sign_test_p_fewer_attempts", "goal_met"} <= set(change)
    assert first["pass_rate_difference"]["n"] == 3
    assert (tmp_path / "memory_recurring.png").stat().st_size > 0
    assert _drop_last_rows(tmp_path / "run", 1) == ["with_memory/2"]
    again = memory_recurring.main(argv)
    assert _segments(again) == [6, 1] and again["tasks"] == 3
    # the repetition penalty is one of the run's arguments: another one is another run
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["arguments"]["repeat_penalty"] == str(Settings().llm_repeat_penalty)
    with pytest.raises(ArgumentsChanged, match="repeat_penalty"):
        memory_recurring.main([*argv, "--repeat-penalty", "1.1"])


def test_long_run_learns_between_tasks_and_resumes(tmp_path: Path, stream: Path) -> None:
    argv = ["--llm", "scripted", "--stream", str(stream), "--held-out", "2", "--every", "2",
            "--train", "1", "--val", "1", "--window", "2",
            "--plan", "bandit:consumer.system,skills:consumer.exemplars",
            "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path)]  # fmt: skip
    first = learning_long_run.main(argv)
    for arm in ("learning", "frozen"):
        values = first["arms"][arm]
        assert values["tasks"] == 4 and len(values["rolling_reward"]) == 4
        assert [p["after"] for p in values["held_out"]] == [0, 2, 4]
        assert all(p["n"] == 2 for p in values["held_out"])
    assert [r["after"] for r in first["rounds"]] == [2, 4]
    assert [len(r["reports"]) for r in first["rounds"]] == [2, 2]
    assert all(p["reused"] for p in first["arms"]["frozen"]["held_out"][1:])
    assert (tmp_path / "learning_long_run.png").stat().st_size > 0
    dropped = _drop_last_rows(tmp_path / "run", 3)
    assert dropped == ["round/4", "heldout/learning/4", "heldout/frozen/4"]
    again = learning_long_run.main(argv)
    assert _segments(again) == [16, 3] and [r["after"] for r in again["rounds"]] == [2, 4]


def test_test_split_learns_then_pairs_seed_and_learned(tmp_path: Path) -> None:
    argv = ["--llm", "scripted", "--plan", "bandit:consumer.system,skills:consumer.rules",
            "--rounds", "1", "--train", "2", "--val", "2", "--test", "2",
            "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path)]  # fmt: skip
    first = learning_test_split.main(argv)
    assert [(r["algorithm"], r["prompt"]) for r in first["rounds"]] == [
        ("bandit", "consumer.system"), ("skills", "consumer.rules"),
    ]  # fmt: skip
    assert first["tasks"] == 2 and set(first["arms"]) == {"seed", "learned"}
    for arm in first["arms"].values():
        assert arm["pass_at_1"]["n"] == 2 and len(arm["rows"]) == 2
        assert [r["task_id"] for r in arm["rows"]] == ["HumanEval-0", "HumanEval-6"]
    assert {"difference", "ci95", "mcnemar_p", "sign_test_p_one_sided"} <= set(
        first["difference"]["pass_at_1"]
    )
    assert first["goal"]["points"] == 0.04
    assert {name for name, _, _ in first["learned_prompts"]} >= {"consumer.system"}
    evaluations = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    assert len(evaluations) >= 4  # learning's runs, replayed if a round is cut short
    assert _drop_last_rows(tmp_path / "run", 1) == ["learned/1"]
    again = learning_test_split.main(argv)
    assert _segments(again) == [7, 1] and again["tasks"] == 2
    assert (tmp_path / "learning_test_split.png").stat().st_size > 0


def test_a_run_continued_elsewhere_restores_what_learning_promoted(tmp_path: Path) -> None:
    run = ResumableRun(tmp_path / "run", {})
    learned = "Write small, well-tested functions."
    run.add("round/1/apo:consumer.system", {"kind": "round", "active": [
        ["consumer.system", "v1.1", learned], ["consumer.rules", "v1", SEED_PROMPTS["consumer.rules"].text],
    ]})  # fmt: skip
    fresh = PromptRegistry.in_data_dir(tmp_path / "other-machine", SEED_PROMPTS)  # seeds only

    learning_test_split.restore_active(fresh, run)

    assert fresh.current("consumer.system").text == learned
    assert fresh.current("consumer.rules").text == SEED_PROMPTS["consumer.rules"].text
    assert [v.status for v in fresh.history("consumer.rules")] == ["active"]  # untouched


def test_a_run_refuses_other_arguments(tmp_path: Path) -> None:
    ResumableRun(tmp_path, {"attempts": "3"}).finish()
    with pytest.raises(ArgumentsChanged, match="attempts"):
        ResumableRun(tmp_path, {"attempts": "2"})
    assert ResumableRun(tmp_path, {"attempts": "2"}, fresh=True).rows == {}


def test_a_plan_names_an_algorithm_and_a_prompt_it_can_learn() -> None:
    assert parse_plan("apo:consumer.system,skills:consumer.rules") == [
        ("apo", "consumer.system"), ("skills", "consumer.rules"),
    ]  # fmt: skip
    for bad in ("apo:nothing", "sgd:consumer.system", "skills:consumer.system", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_plan(bad)


def test_paired_rates_count_discordant_problems() -> None:
    base = [True, True, False, False, False, False, True, False]
    other = [True, True, True, True, True, False, False, True]
    figures = paired_rates(base, other)
    assert (figures["only_base"], figures["only_other"]) == (1, 4)
    assert figures["difference"] == 0.375
    low, high = figures["ci95"]
    assert low < 0.375 < high
    assert figures["mcnemar_p"] == 0.375  # 2 * P(X <= 1), X ~ Bin(5, 1/2)
    assert figures["sign_test_p_one_sided"] == 0.1875  # P(X >= 4)
