"""At-least-once across processes: kill -9 a worker mid-task; another member finishes the task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_KAFKA_CONFIG, Mesh
from kafka_stand_in import stand_in_step, stand_in_task

from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, WorkerOptions
from graph.state import MeshState
from graph.topics import AI_REPORTS, AI_SOLUTIONS
from graph.wire import ReportMessage, SolutionMessage

pytestmark = pytest.mark.broker

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _spawn_worker(mesh: Mesh, role: str, mark_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, str(HERE / "kafka_stand_in_worker.py"),
            "--role", role, "--bootstrap", mesh.bootstrap, "--prefix", mesh.prefix,
            "--group-prefix", mesh.settings.kafka_group_prefix,
            "--kafka-config", json.dumps(TEST_KAFKA_CONFIG),
            "--data-dir", str(mesh.settings.data_dir),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "STAND_IN_MARK_DIR": str(mark_dir)},
    )  # fmt: skip


def _wait_line(process: subprocess.Popen[str], expected: str, timeout_s: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError(
                f"worker exited: {process.stderr.read() if process.stderr else ''}"
            )
        if line.strip() == expected:
            return
    raise AssertionError(f"no {expected!r} from the worker within {timeout_s} s")


def test_kill_9_mid_task_the_other_group_member_completes_it(mesh: Mesh, tmp_path: Path) -> None:
    mark_dir = tmp_path / "marks"
    mark_dir.mkdir()
    consumers = [_spawn_worker(mesh, "consumer", mark_dir) for _ in range(2)]
    others = [r for r in ("producer", "sandbox", "reviewer", "supervisor")]
    try:
        for process in consumers:
            _wait_line(process, "JOINED", 30)
        with MeshWorkers(
            others, mesh.settings, stand_in_step, WorkerOptions(topic_prefix=mesh.prefix)
        ) as workers:
            assert workers.wait_joined(30)
            time.sleep(1.5)  # let the two consumer workers settle their partitions
            state = MeshState(task=stand_in_task("HOLD=3 add slowly"))
            with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
                request = sink.feed_request(state)

            # which worker holds the task? it marks its pid when the node starts
            deadline = time.monotonic() + 20
            while not list(mark_dir.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.02)
            marks = list(mark_dir.iterdir())
            assert len(marks) == 1, "no consumer worker started the task"
            victim_pid = int(marks[0].name)
            victim = next(p for p in consumers if p.pid == victim_pid)
            survivor = next(p for p in consumers if p.pid != victim_pid)
            killed_at = time.monotonic()
            os.kill(victim_pid, signal.SIGKILL)  # mid-task: nothing published, nothing committed
            victim.wait(5)
            marks[0].unlink()

            reports = mesh.read(AI_REPORTS, 1, timeout_s=40)
            recovered_in = time.monotonic() - killed_at
        assert len(reports) == 1
        report = reports[0].message
        assert isinstance(report, ReportMessage) and report.run_id == request.run_id
        assert report.status == "done"
        # the survivor redid the consumer step; exactly one solution was published
        solutions = mesh.read(AI_SOLUTIONS, timeout_s=3, idle_s=1.0)
        assert len(solutions) == 1
        assert isinstance(solutions[0].message, SolutionMessage)
        assert solutions[0].headers["worker"].split(":")[1] == str(survivor.pid)
        assert [p.name for p in mark_dir.iterdir()] == [str(survivor.pid)]
        print(f"task completed {recovered_in:.1f} s after the kill")
        assert recovered_in < 30
    finally:
        for process in consumers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in consumers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_sigterm_stops_a_worker_process_gracefully(mesh: Mesh, tmp_path: Path) -> None:
    process = _spawn_worker(mesh, "consumer", tmp_path)
    try:
        _wait_line(process, "JOINED", 30)
        with KafkaEdgeSink(mesh.settings, topic_prefix=mesh.prefix) as sink:
            sink.feed_task(stand_in_task("HOLD=1 finish me"))
        deadline = time.monotonic() + 20
        while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)  # while the node runs
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        stopped = next(line for line in out.splitlines() if line.startswith("STOPPED"))
        stats = json.loads(stopped.split(" ", 1)[1])
        assert stats["processed"] == 1
        assert len(mesh.read(AI_SOLUTIONS, 1)) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
