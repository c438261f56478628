"""The real LangGraph server as `aimesh server` starts it (outside the project's directory,
offline, its embedded broker attached): a run through the API, a run triggered by a task on
`ai_server_tasks` and by `aimesh feed --server`, the dashboard."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from langgraph_sdk import get_sync_client
from typer.testing import CliRunner

from app.cli.main import app
from app.server import thread_id_for
from foundation.settings import Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState, Task
from graph.topics import AI_REPORTS, AI_TELEMETRY
from graph.wire import ReportMessage, read_mesh_topic
from kafka_edges.broker import free_port
from prompt_registry import LearningDB

pytestmark = pytest.mark.timeout(240)
PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    settings: Settings


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`aimesh server --llm scripted` as a user starts it, from a directory outside the project
    (its broker embedded, started by the command)."""
    workdir = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "AIMESH_DATA_DIR": str(workdir), "PYTHONPATH": str(PROJECT)}
    env.pop("AIMESH_KAFKA_BOOTSTRAP", None)
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", "server", "--llm", "scripted",
             "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if (health := _get_json(url + "/aimesh/health"))["intake"]:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.3)
            settings = Settings(
                llm="scripted", kafka_bootstrap=health["bootstrap"], data_dir=workdir
            )
            yield Server(url, settings)
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
            assert time.monotonic() - started < 20, "the server did not stop on Ctrl-C"
            logged = log_path.read_text()
            assert "aimesh server ready: API " + url in logged
            assert "model: scripted double" in logged and "(embedded, in memory)" in logged
            assert "Traceback" not in logged
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_a_run_through_the_api_goes_through_all_five_agents(server: Server) -> None:
    client = get_sync_client(url=server.url)
    thread = client.threads.create()
    values = client.runs.wait(thread["thread_id"], "ai-mesh", input={"task_index": 2})
    state = MeshState.model_validate(values)
    assert state.passed and state.status == "done"
    assert state.review is not None and state.report is not None
    # the server's graph published its transitions and telemetry to Kafka
    reports = read_mesh_topic(
        AI_REPORTS, server.settings, timeout_s=20,
        until=lambda r: isinstance(r.message, ReportMessage) and r.message.run_id == state.run_id,
    )  # fmt: skip
    assert any(getattr(r.message, "run_id", None) == state.run_id for r in reports)
    telemetry = read_mesh_topic(AI_TELEMETRY, server.settings, timeout_s=5, idle_s=1.0)
    agents = {
        r.message.agent for r in telemetry if getattr(r.message, "run_id", None) == state.run_id
    }  # type: ignore[union-attr]
    assert agents == {"producer", "consumer", "sandbox", "reviewer", "supervisor"}
    # and recorded the run as a rollout, LLM calls included
    db = LearningDB.in_data_dir(server.settings.data_dir)
    [rollout] = db.query("SELECT * FROM rollouts WHERE rollout_id = ?", (state.run_id,))
    assert rollout["source"] == "server"
    spans = db.query("SELECT kind FROM spans WHERE rollout_id = ?", (rollout["rollout_id"],))
    assert {"llm", "node", "reward"} <= {span["kind"] for span in spans}


def test_a_task_published_to_ai_server_tasks_becomes_a_server_run(server: Server) -> None:
    task = Task(
        statement="Return the square of n.",
        signature="def square(n: int) -> int",
        entry_point="square",
        tests=["assert square(3) == 9", "assert square(-2) == 4"],
        reference_solution="def square(n: int) -> int:\n    return n * n\n",
    )
    with KafkaEdgeSink(server.settings, origin="feed") as sink:
        sent = sink.feed_server_task(MeshState(task=task, max_attempts=1))
    client = get_sync_client(url=server.url)
    thread_id = thread_id_for(sent.run_id)
    deadline = time.monotonic() + 60
    while True:
        try:
            values = client.threads.get_state(thread_id)["values"]
            if isinstance(values, dict) and values.get("report"):
                break
        except Exception:  # the thread does not exist until the intake created it
            pass
        assert time.monotonic() < deadline, "no run was started for the published task"
        time.sleep(0.5)
    state = MeshState.model_validate(values)
    assert state.task is not None and state.task.entry_point == "square"
    assert state.run_id == sent.run_id and state.report is not None
    assert _get_json(server.url + "/aimesh/health")["started_runs"] >= 1


def test_feed_sends_tasks_to_the_servers_intake_and_waits_for_their_reports(
    server: Server, tmp_path: Path
) -> None:
    result = CliRunner(env={"AIMESH_DATA_DIR": str(tmp_path)}).invoke(
        app, ["feed", "--server", server.url, "-n", "1", "--wait", "120"]
    )
    assert result.exit_code == 0, result.output
    assert "sent 1 task(s) to the LangGraph server's intake" in result.stdout
    assert re.search(r": done task=HumanEval-0 verdict=\w+", result.stdout), result.stdout


def test_feed_to_a_server_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["feed", "--server", url, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: no AI-Mesh LangGraph server answers at {url}")
    assert len(result.stderr.splitlines()) == 1


def test_the_dashboard_is_mounted_in_the_server(server: Server) -> None:
    health = _get_json(server.url + "/dashboard/api/health")
    assert health["bootstrap"] == server.settings.kafka_bootstrap
    with urllib.request.urlopen(server.url + "/dashboard/", timeout=5) as page:
        assert "AI-Mesh" in page.read().decode()
    with urllib.request.urlopen(server.url + "/dashboard", timeout=5) as page:  # redirected
        assert page.url == server.url + "/dashboard/" and "AI-Mesh" in page.read().decode()
    # the three runs of the tests above: each a finished task with its detail, none in progress
    deadline = time.monotonic() + 20
    while (snap := _get_json(server.url + "/dashboard/api/snapshot"))["totals"]["reports"] < 3:
        assert time.monotonic() < deadline, snap["totals"]
        time.sleep(0.3)
    totals = snap["totals"]
    assert totals["tasks_finished"] == totals["reports"] and totals["tasks_in_progress"] == 0
    task_id = snap["reports"][0]["task_id"]
    detail = _get_json(server.url + "/dashboard/api/task?" + urlencode({"task_id": task_id}))
    assert detail["attempts"] and detail["attempts"][0]["code"]
