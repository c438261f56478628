"""Build the run-time context (LLM, sandbox, memory, prompt registry) that the settings describe."""

from __future__ import annotations

from foundation.settings import Settings
from graph.context import MeshContext
from llm.chat import make_chat_model
from memory import AgentMemory
from nodes.prompts import SEED_PROMPTS
from prompt_registry import PromptRegistry
from sandbox import make_sandbox


def build_context(settings: Settings, *, use_memory: bool | None = None) -> MeshContext:
    """Every dependency the settings describe. Memory (mem0) is opened when `use_memory` is true,
    or, by default, when `settings.memory.enabled` is. Prompts come from the registry in the data
    dir."""
    wanted = settings.memory.enabled if use_memory is None else use_memory
    return MeshContext(
        settings=settings,
        llm=make_chat_model(settings),
        sandbox=make_sandbox(
            settings.sandbox,
            timeout_s=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            allow_unisolated=settings.sandbox_allow_unisolated,
        ),
        registry=PromptRegistry.in_data_dir(settings.data_dir, SEED_PROMPTS),
        memory=AgentMemory.from_settings(settings) if wanted else None,
    )
