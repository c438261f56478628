"""The dashboard router inside a real `langgraph dev` server's http app (offline, embedded broker).

A throwaway project in a temp dir: a one-node graph and an http app that includes the
dashboard router at /dashboard, the way the mesh's own http app is meant to.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kafka_edges.broker import EmbeddedBroker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

GRAPH = """
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class S(TypedDict):
    x: int


def step(state: S) -> S:
    return {"x": state["x"] + 1}


builder = StateGraph(S)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
graph = builder.compile()
"""

HTTP_APP = """
from fastapi import FastAPI

from dashboard.app import create_router

app = FastAPI()
app.include_router(create_router(), prefix="/dashboard")
"""


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_router_runs_inside_the_langgraph_server(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.exists() and shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (the `server` extra)")
    (tmp_path / "graph_mod.py").write_text(GRAPH)
    (tmp_path / "http_app.py").write_text(HTTP_APP)
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "dependencies": ["."],
                "graphs": {"g": "./graph_mod.py:graph"},
                "http": {"app": "./http_app.py:app"},
            }
        )
    )
    with EmbeddedBroker() as broker:
        port = free_port()
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "LANGSMITH_TRACING": "false",
            "AIMESH_KAFKA_BOOTSTRAP": broker.bootstrap,
        }
        log = (tmp_path / "server.log").open("wb")
        server = subprocess.Popen(
            [
                str(cli) if cli.exists() else "langgraph",
                "dev",
                "--no-browser",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-reload",
            ],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                try:
                    source = _get_json(base + "/dashboard/api/health")
                    if source["state"] in ("waiting", "connected"):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "no dashboard inside the server within 60 s"
                time.sleep(0.2)
            assert source["running"] is True  # the router's lifespan ran inside the server's
            assert source["bootstrap"] == broker.bootstrap  # taken from AIMESH_KAFKA_BOOTSTRAP
            with urllib.request.urlopen(base + "/dashboard/", timeout=5) as page:
                assert '<base href="/dashboard/">' in page.read().decode()
            with urllib.request.urlopen(base + "/ok", timeout=5) as ok:
                assert ok.status == 200  # the server's own routes are untouched

            stream = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            stream.request("GET", "/dashboard/api/stream")
            response = stream.getresponse()
            assert response.status == 200
            assert response.getheader("content-type", "").startswith("text/event-stream")
            # Ctrl-C with the stream open: the server must not wait for the browser to leave
            started = time.monotonic()
            os.killpg(server.pid, signal.SIGINT)
            server.wait(20)
            assert time.monotonic() - started < 15
            stream.close()
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
            log.close()
