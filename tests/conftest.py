"""Shared fixtures: settings and services wired to the scripted LLM test double."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services import build_context
from foundation.postgres_server import PostgresMissing, ThrowAwayPostgres
from foundation.settings import Settings
from graph.context import MeshContext
from llm.engine_build import Engine, EngineError, find_engine
from memory.embedder import EmbedderNotFoundError, OnnxExport, default_model_dir, onnx_export_of


@pytest.fixture(scope="session", autouse=True)
def embedder_export() -> OnnxExport:
    """The embedder's ONNX export in the cache: what set-up made, else made now (torch, once)."""
    cache_dir = Settings().cache_dir
    try:
        return onnx_export_of(default_model_dir(), cache_dir)
    except EmbedderNotFoundError:
        from memory.onnx_export import export_embedder  # torch: only when set-up has not run

        return export_embedder(default_model_dir(), cache_dir)[0]


@pytest.fixture
def scripted_settings(tmp_path: Path) -> Settings:
    """Settings for an offline run: scripted LLM, local sandbox, data in a temp dir."""
    return Settings(llm="scripted", data_dir=tmp_path / "data", sandbox_timeout_s=10.0)


@pytest.fixture
def scripted_services(scripted_settings: Settings) -> MeshContext:
    """MeshContext with the scripted LLM test double and the real local sandbox (no memory)."""
    return build_context(scripted_settings, use_memory=False)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def engine() -> Engine:
    """This CPU's llama-server build in the project cache (`make setup` builds it)."""
    try:
        return find_engine(Settings().cache_dir)
    except EngineError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowAwayPostgres]:
    """A throw-away Postgres cluster for the session (initdb in a temp dir, stopped at the end);
    the tests that need one skip, with the reason, where Postgres is not installed."""
    try:
        server = ThrowAwayPostgres()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: ThrowAwayPostgres) -> str:
    """A fresh, empty database on the session's throw-away Postgres server."""
    return postgres_server.new_database(f"t_{uuid.uuid4().hex[:12]}")
