"""The README's five-minute tour works when pasted: every command of its code blocks is run, in
order, as a user would in several terminals, against the scripted model (the test double).

Commands that run until Ctrl-C (`broker`, `dashboard`, `worker`, `server`) are started in the
background and waited for (the line that says they are ready); the broker's `export ...` line
is "pasted" into the environment of the commands after it, as the tour says. What differs from a
user's session, to keep the test bounded and free of clashes: every command runs with
AIMESH_LLM=scripted and memory off, in its own data dir; the dashboard and the server get free
ports (the server's URL in later commands follows); `run --distributed` runs 1 worker per node
and 2 tasks instead of the tour's numbers (tests/graph/test_distributed.py covers it further);
`make notebook` is checked as a dry run (tests/app/test_makefile.py) and the notebooks are
executed by tests/notebooks.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.distributed import READY_LINE
from kafka_edges.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
AIMESH = ".venv/bin/aimesh"
FAST_GROUPS = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "400"}
SERVER_URL = "http://127.0.0.1:2024"
ONE_SHOT_TIMEOUT_S = 240
READY_TIMEOUT_S = 120

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]


def tour_commands(readme: str) -> list[str]:
    """The command lines of the code blocks in the README's tour section, in order."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return [
        line.split("  #")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@dataclass
class Background:
    """A command running until Ctrl-C, its stdout lines collected as they come."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, ready: Callable[[str], bool], timeout_s: float = READY_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.seen}"
                continue
            self.seen.append(line)
            if ready(line):
                return line
        raise AssertionError(f"not ready within {timeout_s} s: {self.seen}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@dataclass
class Session:
    """The user's terminals: the environment every command sees, what runs in the background."""

    env: dict[str, str]
    background: list[Background] = field(default_factory=list)
    server_url: str = SERVER_URL
    last_task_id: str | None = None

    def argv(self, line: str) -> tuple[list[str], dict[str, str]]:
        """The command line as argv and its environment (`VAR=value` prefixes applied)."""
        words = shlex.split(line)
        env = dict(self.env)
        while "=" in words[0] and not words[0].startswith(AIMESH):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        assert words[0] == AIMESH, f"the tour's commands are aimesh commands: {line}"
        args = [w.replace(SERVER_URL, self.server_url) for w in words[1:]]
        if self.last_task_id:
            args = [self.last_task_id if a == "<task-id>" else a for a in args]
        return [sys.executable, "-m", "app.cli.main", *args], env

    def start(self, line: str, extra: list[str]) -> Background:
        argv, env = self.argv(line)
        proc = subprocess.Popen(
            [*argv, *extra], cwd=ROOT, env=env, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.background.append(Background(proc))
        return self.background[-1]

    def run(self, line: str) -> str:
        argv, env = self.argv(line)
        if "--distributed" in argv:  # bounded: 5 worker processes, 2 tasks
            argv = [
                {"2": "1", "6": "2"}.get(a, a) if argv[i - 1] in ("--workers", "-n") else a
                for i, a in enumerate(argv)
            ]
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=ONE_SHOT_TIMEOUT_S
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        if ids := re.findall(r"^\d+\s+([0-9a-f]{12})\s", done.stdout, re.MULTILINE):
            self.last_task_id = ids[0]
        return done.stdout


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    env = {
        **os.environ,
        "AIMESH_DATA_DIR": str(tmp_path / "data"),
        "AIMESH_LLM": "scripted",
        "AIMESH_MEMORY_ENABLED": "false",
        "AIMESH_KAFKA_CONFIG": json.dumps(FAST_GROUPS),
        "COLUMNS": "80",
    }
    env.pop("AIMESH_KAFKA_BOOTSTRAP", None)
    terminals = Session(env)
    try:
        yield terminals
    finally:
        for running in reversed(terminals.background):
            running.stop()


def test_the_tour_is_the_commands_this_test_knows() -> None:
    commands = tour_commands(README.read_text())
    assert commands[-1] == "make notebook"
    assert all(c.startswith((AIMESH, "AIMESH_LLM=scripted " + AIMESH)) for c in commands[:-1])
    assert {shlex.split(c)[0 if c.startswith(AIMESH) else 1] for c in commands[:-1]} == {AIMESH}


def test_every_command_of_the_tour_works_pasted(session: Session) -> None:
    for line in tour_commands(README.read_text()):
        if line == "make notebook":
            continue  # a dry run in tests/app/test_makefile.py; the notebooks in tests/notebooks
        command = shlex.split(line.split(AIMESH, 1)[1])[0]
        if command == "broker":
            export = session.start(line, []).wait_for(lambda s: s.startswith("export "))
            name, value = export.removeprefix("export ").split("=", 1)
            session.env[name] = value  # pasted into the other terminals
        elif command == "dashboard":
            port = free_port()
            session.start(line, ["--port", str(port)]).wait_for(lambda s: "dashboard on" in s)
        elif command == "worker":
            session.start(line, []).wait_for(lambda s: s == READY_LINE)
        elif command == "server":
            port = free_port()
            session.server_url = f"http://127.0.0.1:{port}"
            session.start(line, ["--port", str(port)]).wait_for(
                lambda s: s.startswith("aimesh server ready")
            )
        else:
            out = session.run(line)
            if command == "feed":
                assert re.search(r": done task=\S+ verdict=", out), out
