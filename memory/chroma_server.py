"""A Chroma server as a child process: the shared memory store for distributed workers.

Runs the server built into the `chromadb` package (`chroma run --path DIR --host H --port P`),
persisting to DIR. Every worker then uses `AIMESH_MEMORY_BACKEND=chroma` with the same host/port.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from foundation.child_server import ChildServer
from foundation.errors import InfrastructureError
from foundation.ports import free_port

# `chroma run ...`, exactly as the `chroma` console script does it, with no dependency on PATH.
_CHROMA_CLI = (
    "import sys, chromadb_rust_bindings; chromadb_rust_bindings.cli(['chroma', *sys.argv[1:]])"
)


class ChromaServerError(InfrastructureError):
    """The Chroma server cannot be started or died."""


def heartbeat_url(host: str, port: int) -> str:
    """The server's liveness endpoint."""
    return f"http://{host}:{port}/api/v2/heartbeat"


def chroma_is_up(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Does a Chroma server answer on host:port?"""
    try:
        return httpx.get(heartbeat_url(host, port), timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


class ChromaServer(ChildServer):
    """`chroma run` as a child process; a context manager (start/stop).

    The log goes to `<path>/chroma-<port>.log`.
    """

    error = ChromaServerError
    name = "the Chroma server"

    def __init__(
        self,
        path: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(ready_timeout_s=ready_timeout_s)
        self.path = path.expanduser().resolve()
        self.host = host
        self.port = port

    def _prepare(self) -> Path:
        if self.port is None:
            self.port = free_port(self.host)
        elif chroma_is_up(self.host, self.port):
            raise ChromaServerError(f"a Chroma server already answers on {self.host}:{self.port}")
        return self.path / f"chroma-{self.port}.log"

    def _command(self) -> list[str]:
        cmd = ["-c", _CHROMA_CLI, "run", "--path", str(self.path)]
        return [*cmd, "--host", self.host, "--port", str(self.port)]

    def _env(self) -> dict[str, str]:
        return {"ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}

    def _is_ready(self) -> bool:
        assert self.port is not None
        return chroma_is_up(self.host, self.port, timeout_s=0.5)
