"""Opening mem0 offline: its import (telemetry off), the vector store and the mem0 config.

`open_mem0` turns the mesh's settings into a mem0 `Memory`: embedded Qdrant in `<dir>/qdrant` or
a shared Chroma server, the local all-MiniLM-L6-v2 embedder (its ONNX export, verified when the
memory opens, loaded at first use) and a history database in `<dir>/history.db`. `AgentMemory` holds the API the agents call.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from foundation.settings import MemorySettings
from memory.chroma_server import chroma_is_up
from memory.embedder import EMBEDDING_DIMS, onnx_export_of, resolve_model_dir
from memory.errors import MemoryConfigError, MemoryStoreBusyError, MemoryUnavailableError
from memory.lazy_providers import install as install_deferred_providers

if TYPE_CHECKING:
    from mem0 import Memory

    from foundation.settings import Settings

# Where a placeholder OpenAI client points when infer is off: mem0 always builds an LLM client,
# but with infer=False it is never called.
_UNUSED_LLM_URL = "http://127.0.0.1:9/v1"
# Expected, harmless warnings in this offline configuration (no spaCy, no fastembed: semantic
# search only), logged by mem0 on every start.
_QUIET_MESSAGES = (
    "Failed to load spaCy",
    "fastembed not installed",
    "does not support keyword search",
)


@dataclass(frozen=True)
class ScoreScale:
    """Converts between cosine similarity and the score mem0 reports for a vector store.

    Qdrant reports cosine similarity. mem0's Chroma store reports 1 / (1 + distance), where the
    distance depends on the collection's space; our vectors are unit length.
    """

    space: Literal["cosine", "chroma-cosine", "chroma-l2"]

    def to_cosine(self, score: float) -> float:
        if self.space == "cosine" or score <= 0:
            return score
        distance = 1.0 / score - 1.0
        return 1.0 - distance if self.space == "chroma-cosine" else 1.0 - distance / 2.0

    def from_cosine(self, cosine: float) -> float:
        if self.space == "cosine":
            score = cosine
        elif self.space == "chroma-cosine":
            score = 1.0 / (1.0 + (1.0 - cosine))
        else:
            score = 1.0 / (1.0 + (2.0 - 2.0 * cosine))
        return min(max(score, 0.0), 1.0)


QUIET_LOGGERS = ("mem0", "sentence_transformers")
"""Loggers held at WARNING: mem0 logs every insert, sentence-transformers draws a progress bar for
every embedding when its logger is at INFO."""


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(quiet in message for quiet in _QUIET_MESSAGES)


def _import_mem0(mem0_dir: Path) -> type[Memory]:
    """Import mem0 with telemetry off and its config dir in the project (before the import)."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ.setdefault("MEM0_DIR", str(mem0_dir))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb's client
    mem0_dir.mkdir(parents=True, exist_ok=True)
    try:
        from mem0 import Memory
        from mem0.memory import main as mem0_main
        from mem0.memory import telemetry as mem0_telemetry
    except ImportError as e:
        raise MemoryUnavailableError(
            f"mem0 is not installed ({e}): pip install -e '.[memory]' (see scripts/setup.sh)"
        ) from e
    install_deferred_providers()
    if mem0_telemetry.MEM0_TELEMETRY or mem0_main.MEM0_TELEMETRY:
        raise MemoryConfigError(
            "mem0 was imported with telemetry on before memory/ could turn it off: "
            "set MEM0_TELEMETRY=False or import memory first"
        )
    # a server logs at INFO: not a line per vector insert, nor a progress bar per embedding
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet = _QuietFilter()
    for name in ("mem0.utils.spacy_models", "mem0.vector_stores.qdrant", "mem0.memory.main"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietFilter) for f in logger.filters):
            logger.addFilter(quiet)
    return Memory


def skip_iri_grammar() -> None:
    """Keep jsonschema from importing `rfc3987_syntax` (its optional `iri` format check), which
    compiles a Lark grammar at import: 1-2 s of CPU in every process that imports chromadb
    (for its embedding-function schemas, which never check an IRI here). With None in
    `sys.modules` that optional import fails, as jsonschema expects when it is not installed."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _chroma_client(settings: MemorySettings) -> tuple[Any, ScoreScale]:
    """A client for the shared Chroma server, with the collection created in cosine space."""
    skip_iri_grammar()
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError as e:
        raise MemoryUnavailableError(
            f"chromadb is not installed ({e}): pip install -e '.[memory]'"
        ) from e

    # chromadb warns on every read of a collection created without an embedding function.
    warnings.filterwarnings(
        "ignore", message="legacy embedding function config", category=DeprecationWarning
    )
    host, port = settings.chroma_host, settings.chroma_port
    if not chroma_is_up(host, port, timeout_s=settings.chroma_timeout_s):
        raise MemoryConfigError(
            f"no Chroma server answers at {host}:{port}: start one with "
            f"`aimesh memory serve --port {port}` (AIMESH_MEMORY_BACKEND=chroma)"
        )
    client = chromadb.HttpClient(
        host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection(
        settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )
    config = collection.configuration or {}
    hnsw = config.get("hnsw") or {}
    space = hnsw.get("space") or (collection.metadata or {}).get("hnsw:space") or "l2"
    scale = ScoreScale("chroma-l2" if space == "l2" else "chroma-cosine")
    return client, scale


def _vector_store(settings: MemorySettings, directory: Path) -> tuple[dict[str, Any], ScoreScale]:
    """mem0's vector-store config and the scale of the scores that store reports."""
    if settings.backend == "qdrant":
        config = {
            "collection_name": settings.collection,
            "path": str(directory / "qdrant"),
            "embedding_model_dims": EMBEDDING_DIMS,
        }
        return {"provider": "qdrant", "config": config}, ScoreScale("cosine")
    client, scale = _chroma_client(settings)
    return {
        "provider": "chroma",
        "config": {"collection_name": settings.collection, "client": client},
    }, scale


def mem0_config(
    settings: Settings, directory: Path, vector_store: dict[str, Any], base_url: str | None
) -> dict[str, Any]:
    """The whole mem0 config: the given vector store, the local embedder (the verified ONNX
    export, under mem0's `huggingface` name, which `memory.lazy_providers` maps to it), the LLM
    (used only when infer is on) and the history database."""
    ms = settings.memory
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    export = onnx_export_of(resolve_model_dir(ms.embedder_model), settings.cache_dir)
    return {
        "vector_store": vector_store,
        "embedder": {
            "provider": "huggingface",
            "config": {
                "model": str(export.onnx_path),
                "embedding_dims": EMBEDDING_DIMS,
                "model_kwargs": {
                    "model_dir": str(export.model_dir),
                    "threads": ms.embedder_threads,
                },
            },
        },
        "llm": {
            "provider": "openai",
            "config": {
                "model": settings.llm_model,
                "api_key": api_key or "not-needed",
                "openai_base_url": base_url or _UNUSED_LLM_URL,
                "temperature": 0.1,
                "max_tokens": 1000,
            },
        },
        "history_db_path": str(directory / "history.db"),
    }


def open_mem0(
    settings: Settings, directory: Path, *, llm_base_url: str | None = None
) -> tuple[Memory, ScoreScale]:
    """Open mem0 in `directory` as `settings.memory` describes; `llm_base_url` overrides
    `settings.llm_base_url`. The embedder loads at the first add or search."""
    ms = settings.memory
    base_url = llm_base_url or settings.llm_base_url
    if ms.infer and not base_url:
        raise MemoryConfigError(
            "AIMESH_MEMORY_INFER=true needs an OpenAI-compatible endpoint: set "
            "AIMESH_LLM_BASE_URL (e.g. from `aimesh model serve`)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    memory_cls = _import_mem0(directory / "mem0")
    vector_store, scale = _vector_store(ms, directory)
    try:
        memory = memory_cls.from_config(mem0_config(settings, directory, vector_store, base_url))
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise MemoryStoreBusyError(
                f"the memory store {directory / 'qdrant'} is open in another process; "
                "embedded Qdrant allows one process at a time: share memory between "
                "processes with AIMESH_MEMORY_BACKEND=chroma (`aimesh memory serve`)"
            ) from None
        raise
    return memory, scale
