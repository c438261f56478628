"""One settings model for the whole mesh, read from AIMESH_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "aimesh"


class Settings(BaseSettings):
    """Everything configurable. Each field is read from `AIMESH_<FIELD>` (or a .env file)."""

    model_config = SettingsConfigDict(env_prefix="AIMESH_", env_file=".env", extra="ignore")

    # LLM
    llm: Literal["auto", "openai", "local", "scripted"] = Field(
        "auto",
        description="auto: an OpenAI-compatible endpoint if llm_base_url or OPENAI_API_KEY is set, "
        "else the embedded local model; scripted: the deterministic test double",
    )
    llm_base_url: str | None = None
    llm_model: str = "qwen2.5-coder-0.5b-instruct"
    llm_api_key: SecretStr | None = None
    llm_max_tokens: int = 768
    llm_temperature: float = 0.2
    llm_timeout_s: float = 300.0
    local_model: str = Field("0.5b", description="0.5b, 1.5b, or a path to any GGUF file")
    local_model_threads: int = 2

    # The loop
    max_attempts: int = Field(3, ge=1, le=10)
    producer_max_tries: int = Field(3, ge=1, le=10)
    producer_ground_tests: bool = Field(
        True,
        description="compute the expected values of a produced task's tests by running its "
        "reference solution (the reference is the truth); off: tests must pass as written",
    )
    retry_strategy: Literal["repair", "resample"] = Field(
        "resample",
        description="repair: a retry sees its previous code and the sandbox's verdict; resample: "
        "a retry starts afresh from the task and the verdict, without the failed code",
    )
    review_with_llm: bool = True
    task_time_budget_s: float = 300.0
    task_token_budget: int = 20_000

    # Sandbox
    sandbox: Literal["local", "e2b", "docker"] = "local"
    sandbox_timeout_s: float = 10.0
    sandbox_memory_mb: int = 512
    sandbox_allow_unisolated: bool = Field(
        False, description="explicit opt-in to run code WITHOUT isolation when bubblewrap cannot"
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

    # Storage
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    data_dir: Path = Path(".aimesh")

    @property
    def checkpoint_db(self) -> Path:
        return self.data_dir / "checkpoints.sqlite"

    @property
    def model_label(self) -> str:
        """The model's name for reports ("scripted double" for the offline test double)."""
        return "scripted double" if self.llm == "scripted" else self.llm_model


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
