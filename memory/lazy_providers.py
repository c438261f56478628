"""mem0's embedder and LLM, built on first use instead of when the memory opens.

mem0 builds its embedder and its LLM client (openai) in `Memory.__init__`, although listing,
counting, exporting and clearing never embed anything, and with infer off the LLM is never
called. `install()` maps mem0's `huggingface` embedder and `openai` LLM providers to stand-ins
that build the real thing, from the same config, at the first call that needs it (thread-safe,
once): the embedder is the model's ONNX export on ONNX Runtime (`memory.onnx_embedder`, the
vectors of sentence-transformers without torch); the LLM is mem0's own class. Nothing here
imports mem0 at module level.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, ClassVar


def _load_class(path: str) -> Any:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class _Deferred:
    """Stands in for a mem0 provider object; the real one is built on first attribute use."""

    target: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._real: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Has the real provider been built?"""
        return self._real is not None

    def real(self) -> Any:
        """The real mem0 provider object (built now if need be)."""
        with self._lock:
            if self._real is None:
                self._real = _load_class(self.target)(self.config)
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)


class DeferredEmbedding(_Deferred):
    """mem0's embedder, loaded at the first embed: the ONNX export at `config.model`, with the
    tokenizer of `config.model_kwargs["model_dir"]` and `["threads"]` intra-op threads.

    `embed` and `embed_batch` return what mem0's `HuggingFaceEmbedding` returns for a local
    sentence-transformers model (lists of floats, unit length).
    """

    target = "memory.onnx_embedder.OnnxEmbedder"

    def real(self) -> Any:
        with self._lock:
            if self._real is None:
                options = self.config.model_kwargs or {}
                self._real = _load_class(self.target)(
                    Path(self.config.model),
                    Path(options["model_dir"]),
                    threads=int(options.get("threads", 1)),
                )
            return self._real

    def embed(self, text: Any, memory_action: str | None = None) -> list[float]:
        vector: list[float] = self.real().encode([text])[0].tolist()
        return vector

    def embed_batch(self, texts: list[str], memory_action: str = "add") -> list[list[float]]:
        if not texts:
            return []
        vectors: list[list[float]] = self.real().encode(texts).tolist()
        if len(vectors) != len(texts):
            raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors


class DeferredOpenAILLM(_Deferred):
    """mem0's OpenAI LLM client, created at the first call (never, with infer off)."""

    target = "mem0.llms.openai.OpenAILLM"


def install() -> None:
    """Point mem0's `huggingface` embedder and `openai` LLM providers at the deferred stand-ins.

    Call after importing mem0 (idempotent). Process-wide: every mem0 `Memory` built afterwards
    defers these two providers.
    """
    from mem0.utils.factory import EmbedderFactory, LlmFactory

    embedders: dict[str, str] = EmbedderFactory.provider_to_class
    embedders["huggingface"] = f"{__name__}.DeferredEmbedding"
    llms: dict[str, tuple[str, Any]] = LlmFactory.provider_to_class
    _, config_class = llms["openai"]
    llms["openai"] = (f"{__name__}.DeferredOpenAILLM", config_class)
