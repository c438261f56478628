"""Versioned prompts and the learning store they live in (SQLite): what the agents read at run
time and the optimizers write to."""

from prompt_registry.db import LearningDB
from prompt_registry.registry import (
    Prompt,
    PromptRegistry,
    PromptVersion,
    RegistryError,
    adapter_prompt,
    system_prompt,
)

__all__ = [
    "LearningDB",
    "Prompt",
    "PromptRegistry",
    "PromptVersion",
    "RegistryError",
    "adapter_prompt",
    "system_prompt",
]
