"""The embedded llama.cpp server: an OpenAI-compatible endpoint on 127.0.0.1 for the local model."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from foundation.child_server import ChildServer
from llm.local_model import ModelError, ensure_model, model_alias

if TYPE_CHECKING:
    from foundation.settings import Settings

HOST = "127.0.0.1"
# What `python -m llama_cpp.server` needs: llama-cpp-python and its [server] extra.
_SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")


class ServerError(ModelError):
    """The local model server cannot be started or died."""


class LocalModelServer(ChildServer):
    """`python -m llama_cpp.server` as a child process; a context manager (start/stop).

    Logs go to ``<cache_dir>/logs/llama-server-<port>.log``; `base_url` is the OpenAI base URL.
    """

    error = ServerError
    name = "llama.cpp server"
    poll_s = 0.1

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
        super().__init__(ready_timeout_s=ready_timeout_s)
        self.model = model
        self.alias = alias or model.stem
        self.port = port
        self.threads = threads
        self.n_ctx = n_ctx
        self.log_dir = cache_dir.expanduser() / "logs"

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

    def _prepare(self) -> Path:
        self.port = _free_port() if self.port is None else _check_port(self.port)
        missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise ServerError(
                f"llama-cpp-python[server] is not installed (missing {', '.join(missing)}): "
                "run scripts/setup.sh"
            )
        return self.log_dir / f"llama-server-{self.port}.log"

    def _command(self) -> list[str]:
        cmd = ["-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias]
        cmd += ["--host", HOST, "--port", str(self.port), "--n_ctx", str(self.n_ctx)]
        cmd += ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        return [*cmd, "--logits_all", "false"]

    def _env(self) -> dict[str, str]:
        return {"OMP_WAIT_POLICY": "passive"}

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False


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
