"""ChildServer: start/ready/stop with real child processes, and children die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from foundation.child_server import ChildServer

ROOT = Path(__file__).resolve().parents[2]

# A tiny HTTP server: answers GET with $GREETING and its arguments; `once` serves one request.
HTTP_CODE = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"{os.environ['GREETING']} {sys.argv[1:]}".encode())
server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("serving", sys.argv[1], flush=True)
server.handle_request() if sys.argv[2:] == ["once"] else server.serve_forever()
"""


class ToyError(RuntimeError):
    pass


class ToyServer(ChildServer):
    """`python -c CODE PORT ARGS...` (or `python -m http.server PORT` if CODE is None)."""

    error = ToyError
    name = "the toy server"

    def __init__(
        self, log_dir: Path, code: str | None, *args: str, ready_timeout_s: float = 20.0
    ) -> None:
        super().__init__(ready_timeout_s=ready_timeout_s)
        self.log_dir, self.code, self.args = log_dir, code, list(args)
        self.port: int | None = None

    def _prepare(self) -> Path:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        return self.log_dir / f"toy-{self.port}.log"

    def _command(self) -> list[str]:
        if self.code is None:
            return ["-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
        return ["-c", self.code, str(self.port), *self.args]

    def _env(self) -> dict[str, str]:
        return {"GREETING": "hello", "PYTHONUNBUFFERED": "1"}

    def _is_ready(self) -> bool:
        try:
            return httpx.get(self.url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _gone(pid: int) -> bool:
    """Has process `pid` exited (a zombie counts: nothing may reap an orphan here)?"""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.timeout(60)
def test_python_code_server_start_ready_stop(tmp_path: Path) -> None:
    server = ToyServer(tmp_path / "logs", HTTP_CODE, "a", "b")
    with pytest.raises(ToyError, match=r"^the toy server is not started$"):
        server.wait()
    with server:
        pid = server.pid
        assert pid is not None and not _gone(pid)
        assert server.start() is server  # already started: no second process
        reply = httpx.get(server.url, timeout=5.0)
        # the environment and the arguments reach the server
        assert reply.text == f"hello ['{server.port}', 'a', 'b']"
        assert server.log_path == tmp_path / "logs" / f"toy-{server.port}.log"
        assert server.log_tail().startswith(f"serving {server.port}\n")
        assert '"GET / HTTP/1.1" 200' in server.log_tail(lines=1)
    assert server.pid is None and _gone(pid)
    server.stop()  # idempotent
    assert "GET /" in server.log_tail()  # the log outlives the server


@pytest.mark.timeout(60)
def test_python_module_server_and_wait(tmp_path: Path) -> None:
    with ToyServer(tmp_path, None) as server:
        assert "Directory listing" in httpx.get(server.url, timeout=5.0).text
    assert server.pid is None
    # a server that exits by itself after the readiness check: wait() gives its exit code
    server = ToyServer(tmp_path, HTTP_CODE, "once").start()
    assert server.wait() == 0
    server.stop()


@pytest.mark.timeout(60)
def test_child_that_exits_while_starting_reports_its_log(tmp_path: Path) -> None:
    server = ToyServer(tmp_path, "import sys; print('boom: bad config'); sys.exit(3)")
    with pytest.raises(ToyError) as info:
        server.start()
    assert str(info.value) == (
        f"the toy server exited with code 3 while starting; {server.log_path} ends with:\n"
        "boom: bad config"
    )
    assert server.pid is None


@pytest.mark.timeout(60)
def test_child_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    server = ToyServer(
        tmp_path, "print('thinking'); import time; time.sleep(60)", ready_timeout_s=1.0
    )
    with pytest.raises(ToyError, match=r"^the toy server is not ready after 1 s; .*:\nthinking$"):
        server.start()
    assert server.pid is None


# Starts a child server from a worker thread that then ends, prints its pid, and waits to be killed.
HELPER = """
import sys, threading, time
from pathlib import Path
from foundation.child_server import ChildServer

class Sleeper(ChildServer):
    name = "sleeper"
    def _prepare(self):
        return Path(sys.argv[1]) / "sleeper.log"
    def _command(self):
        return ["-c", sys.argv[2]]
    def _is_ready(self):
        return "ready" in self.log_tail()

servers = []
thread = threading.Thread(target=lambda: servers.append(Sleeper(ready_timeout_s=20).start()))
thread.start()
thread.join()
print(servers[0].pid, flush=True)
time.sleep(120)
"""
SLEEP = "import time; print('ready', flush=True)\nwhile True: time.sleep(0.2)"
IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEP


CHROMA_HELPER = """
import sys, time
from pathlib import Path
from memory.chroma_server import ChromaServer
print(ChromaServer(Path(sys.argv[1])).start().pid, flush=True)
time.sleep(120)
"""


def _kill_parent_and_wait(helper_args: list[str], bound_s: float) -> None:
    """Run a helper that prints its child's pid, SIGKILL it, and check the child dies in time."""
    helper = subprocess.Popen(
        [sys.executable, "-c", *helper_args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    pid = None
    try:
        assert helper.stdout is not None
        pid = int(helper.stdout.readline())
        time.sleep(1.5)  # the child lives on with its parent (after the starting thread ended)
        assert not _gone(pid)
        helper.send_signal(signal.SIGKILL)
        helper.wait()
        assert _wait_gone(pid, bound_s), f"child {pid} outlived its parent by {bound_s} s"
    finally:
        helper.kill()
        helper.wait()
        if pid is not None and not _gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("child", "bound_s"), [(SLEEP, 5.0), (IGNORE_TERM, 12.0)], ids=["plain", "ignores-sigterm"]
)
def test_child_dies_when_its_parent_is_killed(tmp_path: Path, child: str, bound_s: float) -> None:
    _kill_parent_and_wait([HELPER, str(tmp_path), child], bound_s)


@pytest.mark.timeout(90)
def test_chroma_server_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    _kill_parent_and_wait([CHROMA_HELPER, str(tmp_path / "chroma")], 5.0)
