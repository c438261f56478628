"""`aimesh server`: the LangGraph server (graph `ai-mesh`, the dashboard, the Kafka intake), from
any directory, with its broker and its model named.

It starts `langgraph dev` on this project's `langgraph.json` (rewritten with absolute paths into
`<data dir>/langgraph/`, the server's working directory), after attaching a broker (the
configured one, checked, else an embedded one) and the model (the local model's server is
started here, once); the settings travel whole to the server (`AIMESH_SETTINGS_JSON`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import (
    BootstrapOption,
    DataDirOption,
    LlmOption,
    console,
    fail,
    settings_with,
)
from app.distributed import shared_llm_endpoint
from foundation.settings import WIRE_VARIABLE, Settings
from graph.topics import ALL_TOPICS
from kafka_edges.broker import broker_for
from kafka_edges.config import topic_prefix
from llm.chat import check_llm, model_label

PROJECT = Path(__file__).resolve().parents[2]
"""The project's root: where `langgraph.json` and the code it names live."""
READY_TIMEOUT_S = 120.0
QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
}
"""The LangGraph CLI offline: no analytics, no version check."""


def server_config(directory: Path, project: Path = PROJECT) -> Path:
    """The project's `langgraph.json` with absolute paths, written into `directory` (where the
    server keeps its files); its path."""
    source = project / "langgraph.json"
    if not source.is_file():
        raise FileNotFoundError(f"no langgraph.json in {project}: run from a clone of AI-Mesh")
    config: dict[str, Any] = json.loads(source.read_text())
    config.pop("env", None)  # the settings travel whole (AIMESH_SETTINGS_JSON)
    config["dependencies"] = [str(project)]
    config["graphs"] = {name: str(project / path) for name, path in config["graphs"].items()}
    config["http"]["app"] = str(project / config["http"]["app"])
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "langgraph.json"
    target.write_text(json.dumps(config, indent=2))
    return target


def server_intake(url: str, timeout_s: float = 5.0) -> tuple[str, str]:
    """The Kafka bootstrap and topic prefix of the LangGraph server at `url`'s intake (asked of
    its `/aimesh/health`); a one-line error when no server answers or it has no intake."""
    health = f"{url.rstrip('/')}/aimesh/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as response:
            state = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise fail(
            f"no AI-Mesh LangGraph server answers at {url} ({reason}): start one with "
            "`aimesh server`"
        ) from None
    if not state.get("bootstrap"):
        raise fail(
            f"the LangGraph server at {url} has no Kafka intake (start it with `aimesh server`)"
        )
    return str(state["bootstrap"]), str(state.get("topic_prefix") or "")


def server_command(
    port: Annotated[int, typer.Option(help="the server's port")] = 2024,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    llm: LlmOption = None,
    bootstrap: BootstrapOption = None,
    log_level: Annotated[
        str,
        typer.Option(help="the server's log level (INFO: a line per request, run and queue stat)"),
    ] = "WARNING",
    data_dir: DataDirOption = None,
) -> None:
    """Serve the graph with LangGraph's dev server (API, Studio, the dashboard, the Kafka
    intake), its broker and model named, from any directory, until Ctrl-C.

    The graph is `ai-mesh`, the dashboard at /dashboard/, the intake reads `ai_server_tasks`.
    The broker: AIMESH_KAFKA_BOOTSTRAP or --bootstrap (checked), else an embedded one for the
    server's lifetime. The model: --llm / AIMESH_LLM (the local model's server is started once,
    here).
    """
    settings = settings_with(llm=llm, kafka_bootstrap=bootstrap, data_dir=data_dir)
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    label = model_label(settings)
    with contextlib.ExitStack() as stack:
        settings = stack.enter_context(shared_llm_endpoint(settings))
        check_llm(settings)
        broker = stack.enter_context(
            broker_for(settings, topics=ALL_TOPICS, topic_prefix=topic_prefix(settings))
        )
        settings = broker.settings
        config = server_config(settings.data_dir / "langgraph")
        kind = "embedded, in memory" if broker.embedded else "external"
        console.print(f"Kafka: {broker.bootstrap} ({kind})", highlight=False)
        console.print(f"model: {label}", highlight=False)
        code = _serve(config, settings, host, port, log_level)
    if code not in (0, -signal.SIGINT, 128 + signal.SIGINT):
        raise fail(f"the LangGraph server exited with code {code} (its log is above)")


def _serve(config: Path, settings: Settings, host: str, port: int, log_level: str) -> int:
    """Run `langgraph dev` until it exits or we are stopped; its exit code."""
    langgraph = Path(sys.executable).with_name("langgraph")
    command = [
        str(langgraph), "dev", "--no-browser", "--no-reload", "--host", host, "--port", str(port),
        "--config", str(config),
    ]  # fmt: skip
    env = {**os.environ, **QUIET_ENV, WIRE_VARIABLE: settings.to_wire(), "LOG_LEVEL": log_level}
    env.setdefault("LANGSMITH_TRACING", "false")
    proc = subprocess.Popen(command, cwd=config.parent, env=env)
    url = f"http://{host}:{port}"
    threading.Thread(
        target=_announce_ready, args=(proc, url, settings), name="aimesh-server-ready", daemon=True
    ).start()
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server too (same process group)
        return _stop(proc)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Stop the server as Ctrl-C does (SIGINT), killing it if it does not stop in 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _announce_ready(proc: subprocess.Popen[bytes], url: str, settings: Settings) -> None:
    """Once the server answers: where to find it, and how to send it tasks."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/aimesh/health", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    else:
        return
    lines = [
        f"aimesh server ready: API {url} (graph ai-mesh), dashboard {url}/dashboard/",
        f"Studio: https://smith.langchain.com/studio/?baseUrl={url}",
        f"send it tasks: aimesh feed --server {url} -n 3 --wait 120",
        "Ctrl-C to stop",
    ]
    console.print("\n".join(lines), highlight=False, markup=False)
