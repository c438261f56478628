"""The embedded inference engine: llama.cpp's own `llama-server` on 127.0.0.1, an OpenAI-compatible
endpoint for the local model with parallel slots (continuous batching), a prompt cache per slot,
the model's own chat template (Jinja) and LoRA adapters applied per request."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from foundation.child_server import ChildServer
from llm.engine_build import Engine, find_engine
from llm.local_model import ModelError, ensure_model, model_alias

if TYPE_CHECKING:
    from foundation.settings import Settings

HOST = "127.0.0.1"
PROMPT_CACHE_MIB = 1024
"""Host memory for prompts kept beyond the slots (llama-server's default is 8 GiB)."""


class ServerError(ModelError):
    """The local model server cannot be started or died."""


class LocalModelServer(ChildServer):
    """`llama-server` as a child process; a context manager (start/stop).

    Logs go to ``<cache_dir>/logs/llama-server-<port>.log``; `base_url` is the OpenAI base URL.
    `loras` are GGUF LoRA adapters loaded at start, ids in order, applied only to requests that
    name them (see `llm.chat.request_extras`).
    """

    error = ServerError
    name = "llama-server"
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
        parallel: int = 4,
        loras: Sequence[Path] = (),
        ready_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(ready_timeout_s=ready_timeout_s)
        self.model = model
        self.alias = alias or model.stem
        self.port = port
        self.threads = threads
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.loras = tuple(loras)
        self.cache_dir = cache_dir.expanduser()
        self.log_dir = self.cache_dir / "logs"
        self._engine: Engine | None = None

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
            n_ctx=settings.local_model_ctx,
            parallel=settings.local_model_parallel,
            loras=settings.local_model_loras,
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"{self.root_url}/v1"

    def client_settings(self, settings: Settings) -> Settings:
        """`settings` for clients of this server as an OpenAI-compatible endpoint (processes may
        share it): its alias as the model, and each client process keeps at most the server's
        slots in flight (unless `llm_max_in_flight` says otherwise)."""
        return settings.model_copy(
            update={
                "llm": "openai",
                "llm_base_url": self.base_url,
                "llm_api_key": SecretStr("local"),
                "llm_model": self.alias,
                "llm_max_in_flight": settings.llm_max_in_flight or self.parallel,
            }
        )

    @property
    def root_url(self) -> str:
        """The server's own endpoints (`/health`, `/slots`, `/lora-adapters`, `/metrics`)."""
        if self.port is None:
            raise ServerError("the local model server is not started")
        return f"http://{HOST}:{self.port}"

    def _prepare(self) -> Path:
        self.port = _free_port() if self.port is None else _check_port(self.port)
        for lora in self.loras:
            if not lora.is_file():
                raise ServerError(f"no such LoRA adapter: {lora} (see AIMESH_LOCAL_MODEL_LORAS)")
        self._engine = find_engine(self.cache_dir)
        return self.log_dir / f"llama-server-{self.port}.log"

    def _command(self) -> list[str]:
        assert self._engine is not None
        cmd = ["-x", str(self._engine.server), "-m", str(self.model), "--alias", self.alias]
        cmd += ["--host", HOST, "--port", str(self.port), "--no-webui", "--metrics", "--jinja"]
        cmd += ["-t", str(self.threads), "-tb", str(self.threads)]
        cmd += ["-c", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel)]
        cmd += ["--cont-batching", "--cache-ram", str(PROMPT_CACHE_MIB)]
        for lora in self.loras:
            cmd += ["--lora", str(lora)]
        if self.loras:
            cmd.append("--lora-init-without-apply")  # scale 0 until a request names one
        return cmd

    def _env(self) -> dict[str, str]:
        return {"OMP_WAIT_POLICY": "passive"}

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.root_url}/health", timeout=2.0).status_code == 200
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
