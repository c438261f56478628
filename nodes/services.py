"""What the nodes need at run time (LLM, sandbox, prompts, settings), from the run's config."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from graph.settings import Settings, get_settings
from llm.chat import make_chat_model
from nodes.prompts import SEED_PROMPTS, Prompt
from sandbox import Sandbox, make_sandbox

SERVICES_KEY = "aimesh_services"


@dataclass
class Services:
    """The agents' dependencies. Pass one in `config["configurable"]["aimesh_services"]`."""

    settings: Settings
    llm: BaseChatModel
    sandbox: Sandbox
    prompts: dict[str, Prompt] = field(default_factory=lambda: dict(SEED_PROMPTS))

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Build every dependency the settings describe."""
        return cls(
            settings=settings,
            llm=make_chat_model(settings),
            sandbox=make_sandbox(
                settings.sandbox,
                timeout_s=settings.sandbox_timeout_s,
                memory_mb=settings.sandbox_memory_mb,
                allow_unisolated=settings.sandbox_allow_unisolated,
            ),
        )

    def prompt(self, name: str) -> Prompt:
        """The current version of prompt `name`."""
        return self.prompts[name]

    def as_config(self, **configurable: Any) -> RunnableConfig:
        """A RunnableConfig that carries these services (plus any other configurable keys)."""
        return {"configurable": {SERVICES_KEY: self, **configurable}}


_default_lock = threading.Lock()
_default: Services | None = None


def get_services(config: RunnableConfig | None) -> Services:
    """The services carried by `config`, else a process-wide default built from the settings."""
    services = ((config or {}).get("configurable") or {}).get(SERVICES_KEY)
    if isinstance(services, Services):
        return services
    global _default
    with _default_lock:
        if _default is None:
            _default = Services.from_settings(get_settings())
        return _default
