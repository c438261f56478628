"""The run-time context every node receives through LangGraph's `Runtime` (`context_schema`):
the services the agents use. Entry points build it (see `app.services`) and pass it in."""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from foundation.settings import Settings
from memory import AgentMemory
from prompt_registry import Prompt, PromptRegistry
from sandbox import Sandbox


@dataclass
class MeshContext:
    """The agents' dependencies for one run (or a whole batch)."""

    settings: Settings
    llm: BaseChatModel
    sandbox: Sandbox
    prompts: dict[str, Prompt] | None = None
    """Fixed prompts (tests, candidate evaluation); when None, the registry's active versions."""
    registry: PromptRegistry | None = None
    memory: AgentMemory | None = None

    def prompt(self, name: str, seeds: dict[str, Prompt]) -> Prompt:
        """The version of prompt `name` to use now: fixed, else the registry's active one (read
        at each call, so a promotion reaches the next run), else the seed."""
        if self.prompts is not None:
            return self.prompts[name]
        if self.registry is not None:
            return self.registry.current(name)
        return seeds[name]
