"""A Chroma server as a child process: the shared memory store for distributed workers.

Runs the server built into the `chromadb` package (`chroma run --path DIR --host H --port P`),
persisting to DIR. Every worker then uses `AIMESH_MEMORY_BACKEND=chroma` with the same host/port.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

# `chroma run ...`, exactly as the `chroma` console script does it, with no dependency on PATH.
_CHROMA_CLI = (
    "import sys, chromadb_rust_bindings; chromadb_rust_bindings.cli(['chroma', *sys.argv[1:]])"
)


class ChromaServerError(RuntimeError):
    """The Chroma server cannot be started or died."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def heartbeat_url(host: str, port: int) -> str:
    """The server's liveness endpoint."""
    return f"http://{host}:{port}/api/v2/heartbeat"


def chroma_is_up(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Does a Chroma server answer on host:port?"""
    try:
        return httpx.get(heartbeat_url(host, port), timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


class ChromaServer:
    """`chroma run` as a child process; a context manager (start/stop).

    The log goes to `<path>/chroma-<port>.log`.
    """

    def __init__(
        self,
        path: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.path = path.expanduser().resolve()
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> Self:
        """Start the server and wait for its heartbeat; raise ChromaServerError if it cannot."""
        if self._proc is not None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        elif chroma_is_up(self.host, self.port):
            raise ChromaServerError(f"a Chroma server already answers on {self.host}:{self.port}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.path / f"chroma-{self.port}.log"
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-c", _CHROMA_CLI, "run", "--path", str(self.path)]
        cmd += ["--host", self.host, "--port", str(self.port)]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"},
                start_new_session=True,
            )
            atexit.register(self.stop)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ChromaServerError(
                    f"the Chroma server exited with code {code} while starting; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            if chroma_is_up(self.host, self.port, timeout_s=0.5):
                return
            if time.monotonic() > deadline:
                raise ChromaServerError(
                    f"the Chroma server is not ready after {self.ready_timeout_s:.0f} s; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            raise ChromaServerError("the Chroma server is not started")
        return self._proc.wait()

    def stop(self) -> None:
        """Stop the server: terminate, wait, then kill. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
