"""Shared fixtures: settings and services wired to the scripted LLM test double."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services import build_context
from foundation.settings import Settings
from graph.context import MeshContext
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
