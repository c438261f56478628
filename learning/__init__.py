"""Self-learning for AI-Mesh: traced rollouts, rewards, and versioned prompts that improve.

Light to import (no agent-lightning): `PromptRegistry`, `RolloutRecorder`, `LearningDB`.
agent-lightning is imported only by `learning.lightning`, i.e. when APO or a rollout export runs.
"""

from graph.edges import FanOutSink
from learning.rollouts import RolloutRecorder, RolloutTrace, SpanRecord
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry, PromptVersion, RegistryError

__all__ = [
    "FanOutSink",
    "LearningDB",
    "PromptRegistry",
    "PromptVersion",
    "RegistryError",
    "RolloutRecorder",
    "RolloutTrace",
    "SpanRecord",
]
