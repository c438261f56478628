"""The start-up benchmark's plumbing: each tree's console script, and its goals marked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.startup import AIMESH, console_script, goals_of, python_args

ROOT = Path(__file__).resolve().parents[2]


def test_aimesh_runs_as_the_trees_console_script(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project.scripts]\naimesh = "pkg.cli:start"\n')
    args = python_args([AIMESH, "--help"], tmp_path)
    assert args[0] == "-c" and "from pkg.cli import start" in args[1] and args[2:] == ["--help"]
    assert python_args(["-c", "pass"], tmp_path) == ["-c", "pass"]


def test_this_trees_console_script_prints_the_help() -> None:
    done = subprocess.run(
        [sys.executable, *console_script(ROOT), "--help"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.startswith("Usage: aimesh ")


def test_every_goal_is_marked_met_or_missed() -> None:
    run = goals_of("aimesh run -n 3 --llm scripted", 4.0, 80.0, 320.0)
    assert run["goal_met"] is True
    assert run["goals"] == [("≤ 5.0 s", True), ("≤ 300 MiB", False)]
    assert goals_of("aimesh --help", 0.1, 1.6, 20.0)["goals"] == [("≤ x1.5 bare python", False)]
    assert goals_of("python -c pass", 0.05, 1.0, 20.0) == {
        "goal_s": None,
        "goal_met": None,
        "goals": [],
    }
