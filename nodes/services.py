"""What the nodes need at run time (LLM, sandbox, prompts, settings), from the run's config."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from graph.settings import Settings, get_settings
from llm.chat import make_chat_model
from nodes.prompts import SEED_PROMPTS, Prompt
from sandbox import Sandbox, make_sandbox

if TYPE_CHECKING:
    from learning.registry import PromptRegistry
    from memory import AgentMemory

SERVICES_KEY = "aimesh_services"


@dataclass
class Services:
    """The agents' dependencies. Pass one in `config["configurable"]["aimesh_services"]`."""

    settings: Settings
    llm: BaseChatModel
    sandbox: Sandbox
    prompts: dict[str, Prompt] | None = None
    """Fixed prompts (tests, candidate evaluation); when None, the registry's active versions."""
    registry: PromptRegistry | None = None
    memory: AgentMemory | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, use_memory: bool | None = None) -> Services:
        """Build every dependency the settings describe. Memory (mem0) is opened when
        `use_memory` is true, or, by default, when AIMESH_MEMORY_ENABLED is (the default).
        Prompts come from the prompt registry in the data dir."""
        from learning.registry import PromptRegistry

        return cls(
            settings=settings,
            llm=make_chat_model(settings),
            sandbox=make_sandbox(
                settings.sandbox,
                timeout_s=settings.sandbox_timeout_s,
                memory_mb=settings.sandbox_memory_mb,
                allow_unisolated=settings.sandbox_allow_unisolated,
            ),
            registry=PromptRegistry.in_data_dir(settings.data_dir),
            memory=_open_memory(settings, use_memory),
        )

    def prompt(self, name: str) -> Prompt:
        """The version of prompt `name` to use now: fixed, else the registry's active one (read
        at each call, so a promotion reaches the next run), else the seed."""
        if self.prompts is not None:
            return self.prompts[name]
        if self.registry is not None:
            return self.registry.current(name)
        return SEED_PROMPTS[name]

    def as_config(self, **configurable: Any) -> RunnableConfig:
        """A RunnableConfig that carries these services (plus any other configurable keys)."""
        return {"configurable": {SERVICES_KEY: self, **configurable}}


def _open_memory(settings: Settings, use_memory: bool | None) -> AgentMemory | None:
    from memory import AgentMemory, MemorySettings

    memory_settings = MemorySettings()
    wanted = memory_settings.enabled if use_memory is None else use_memory
    return AgentMemory.from_settings(settings, memory_settings) if wanted else None


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
