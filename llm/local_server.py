"""The embedded llama.cpp server: an OpenAI-compatible endpoint on 127.0.0.1 for the local model."""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

import httpx

from llm.local_model import ModelError, ensure_model, model_alias

if TYPE_CHECKING:
    from graph.settings import Settings

HOST = "127.0.0.1"
# What `python -m llama_cpp.server` needs: llama-cpp-python and its [server] extra.
_SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")


class ServerError(ModelError):
    """The local model server cannot be started or died."""


class LocalModelServer:
    """`python -m llama_cpp.server` as a child process; a context manager (start/stop).

    Logs go to ``<cache_dir>/logs/llama-server-<port>.log``; `base_url` is the OpenAI base URL.
    """

    def __init__(
        self,
        model: Path,
        *,
        cache_dir: Path,
        alias: str | None = None,
        port: int | None = None,
        threads: int = 2,
        n_ctx: int = 4096,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.alias = alias or model.stem
        self.port = port
        self.threads = threads
        self.n_ctx = n_ctx
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = cache_dir.expanduser() / "logs"
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model: str | None = None, port: int | None = None
    ) -> LocalModelServer:
        """A server (not started) for `model` (default: settings.local_model), assembled if needed."""
        spec = model or settings.local_model
        return cls(
            ensure_model(spec, settings.cache_dir),
            cache_dir=settings.cache_dir,
            alias=model_alias(spec),
            port=port,
            threads=settings.local_model_threads,
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        if self.port is None:
            raise ServerError("the local model server is not started")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> Self:
        """Start the server and wait until it answers `/v1/models`; raise ServerError if it cannot."""
        if self._proc is not None:
            return self
        self.port = _free_port() if self.port is None else _check_port(self.port)
        missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise ServerError(
                f"llama-cpp-python[server] is not installed (missing {', '.join(missing)}): "
                "run scripts/setup.sh"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"llama-server-{self.port}.log"
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model)]
        cmd += ["--model_alias", self.alias, "--host", HOST, "--port", str(self.port)]
        cmd += ["--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads)]
        cmd += ["--n_threads_batch", str(self.threads), "--logits_all", "false"]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_WAIT_POLICY": "passive"},
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            )
            atexit.register(self.stop)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise ServerError(
                        f"llama.cpp server exited with code {code} while starting; "
                        f"{self.log_path} ends with:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.base_url}/models").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"llama.cpp server not ready after {self.ready_timeout_s:.0f} s; "
                        f"{self.log_path} ends with:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            raise ServerError("the local model server is not started")
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


def _bindable(port: int) -> socket.socket:
    """A socket bound to HOST:port, with SO_REUSEADDR like uvicorn (so TIME_WAIT is no conflict)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def _free_port() -> int:
    with _bindable(0) as sock:
        port: int = sock.getsockname()[1]
        return port


def _check_port(port: int) -> int:
    try:
        _bindable(port).close()
    except OSError as e:
        raise ServerError(f"port {port} on {HOST} is not available: {e.strerror}") from None
    return port
