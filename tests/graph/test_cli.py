"""The `aimesh` command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def aimesh(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "AIMESH_DATA_DIR": str(tmp_path / "data"),
        "AIMESH_MEMORY_ENABLED": "false",  # memory loads an embedder: only where it is tested
        "COLUMNS": "160",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )


def test_run_with_the_scripted_model_prints_the_results_table(tmp_path: Path) -> None:
    done = aimesh(
        tmp_path, "run", "--count", "3", "--llm", "scripted", AIMESH_MEMORY_ENABLED="true"
    )
    assert done.returncode == 0, done.stderr
    assert "AI-Mesh results" in done.stdout
    # the table names each task by its function and category (the scripted double's three)
    for function, category in (("add", "math"), ("reverse_words", "strings")):
        assert any(function in line and category in line for line in done.stdout.splitlines())
    assert "solved 3/3" in done.stdout
    assert len(re.findall(r"^\d+\s+[0-9a-f]{12}\s.*\syes\s", done.stdout, re.MULTILINE)) == 3
    assert "supervisor (ok): Batch" in done.stdout and "pass rate 100%" in done.stdout
    # what the agents learned survives the process: a new one lists it
    listed = aimesh(tmp_path, "memory", "list", "--json", AIMESH_MEMORY_ENABLED="true")
    assert listed.returncode == 0, listed.stderr
    kinds = [
        json.loads(line)["kind"] for line in listed.stdout.splitlines() if line.startswith("{")
    ]
    assert kinds.count("task") == 3 and "fix_recipe" in kinds


def test_resume_reads_back_a_finished_batch_without_rerunning(tmp_path: Path) -> None:
    first = aimesh(tmp_path, "run", "-n", "2", "--llm", "scripted")
    batch = next(line.split()[1] for line in first.stdout.splitlines() if line.startswith("batch "))
    again = aimesh(tmp_path, "run", "--resume", batch)
    assert again.returncode == 0, again.stderr
    assert "solved 2/2" in again.stdout


def test_unreachable_llm_is_one_line_on_stderr_before_the_broker_starts(tmp_path: Path) -> None:
    done = aimesh(
        tmp_path,
        "run",
        "--count",
        "1",
        AIMESH_LLM="openai",
        AIMESH_LLM_BASE_URL="http://127.0.0.1:9/v1",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "cannot reach the LLM at http://127.0.0.1:9/v1" in done.stderr
    assert "aimesh model serve" in done.stderr  # what to do about it
    assert "Kafka:" not in done.stdout  # checked before any broker was started
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    done = aimesh(tmp_path, "run", "--dataset", str(tmp_path / "nope.jsonl"), "--llm", "scripted")
    assert done.returncode == 2
    assert "dataset file not found" in done.stderr


def test_distributed_run_uses_one_worker_process_per_node(tmp_path: Path) -> None:
    done = aimesh(tmp_path, "run", "--count", "2", "--llm", "scripted", "--distributed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Kafka: 127.0.0.1:" in done.stdout and "(embedded)" in done.stdout
    assert "solved 2/2" in done.stdout


def test_unreachable_kafka_is_one_readable_line(tmp_path: Path) -> None:
    done = aimesh(tmp_path, "run", "--llm", "scripted", AIMESH_KAFKA_BOOTSTRAP="127.0.0.1:9")
    assert done.returncode == 2
    assert (
        done.stderr
        == "error: cannot reach Kafka at 127.0.0.1:9 (127.0.0.1:9: Connection refused)\n"
    )
    assert "Traceback" not in done.stdout + done.stderr


def _scripted_dataset(path: Path) -> Path:
    """HumanEval-format records the scripted double knows: add (right away), reverse_words
    (wrong first, right after the sandbox's feedback)."""
    records = [
        {
            "task_id": "T/0",
            "prompt": "def add(a: int, b: int) -> int:\n    'Return the sum.'\n",
            "entry_point": "add",
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"
            "    assert candidate(-1, 1) == 0\n",
        },
        {
            "task_id": "T/1",
            "prompt": "def reverse_words(text: str) -> str:\n    'Reverse the word order.'\n",
            "entry_point": "reverse_words",
            "test": "def check(candidate):\n    assert candidate('hello big world') == 'world big hello'\n",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_eval_reports_each_column_on_the_same_problems(tmp_path: Path) -> None:
    dataset = _scripted_dataset(tmp_path / "tasks.jsonl")
    out = tmp_path / "report.json"
    args = ("eval", "--dataset", str(dataset), "--llm", "scripted", "--json", str(out))
    done = aimesh(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["args"]["memory"] is False and report["problems"] == 2
    assert report["model"] == "scripted double"
    solved = {key: c["solved"] for key, c in report["columns"].items()}
    # reverse_words has no public example: its wrong first try loads, so neither blind sampling
    # nor the public loop can tell; only the hidden tests' failures (oracle feedback) fix it;
    # the model-written tests (f) fail its K candidates alike: the same wrong try each time
    assert solved == {
        "greedy": 1,
        "blind": 1,
        "blind_any": 1,
        "loop": 1,
        "oracle": 2,
        "completion": 1,
        "codet": 1,
    }
    assert report["solved_at_attempt"] == {"loop": {"1": 1}, "oracle": {"1": 1, "2": 1}}

    with_memory = aimesh(tmp_path, *args, "--memory")
    assert with_memory.returncode == 0, with_memory.stderr
    assert json.loads(out.read_text())["args"]["memory"] is True


def test_eval_selects_problems_by_id_and_takes_the_retry_strategy(tmp_path: Path) -> None:
    dataset = _scripted_dataset(tmp_path / "tasks.jsonl")
    out = tmp_path / "report.json"
    base = ("eval", "--dataset", str(dataset), "--llm", "scripted", "--json", str(out))
    done = aimesh(tmp_path, *base, "--ids", "T/1", "--retry", "resample")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [p["task_id"] for p in report["rows"]] == ["T-1"]
    assert report["columns"]["oracle"]["solved"] == 1 and report["columns"]["greedy"]["solved"] == 0
    assert report["settings"]["retry_strategy"] == "resample"

    unknown = aimesh(tmp_path, *base, "--ids", "T/9")
    assert unknown.returncode == 2 and "unknown problem(s): T-9" in unknown.stderr
