"""Self-learning for AI-Mesh: traced rollouts, rewards, and versioned prompts that improve.

Light to import (no agent-lightning): `PromptRegistry`, `RolloutRecorder`, `LearningDB`.
agent-lightning is imported only by `learning.lightning`, i.e. when APO or a rollout export runs.
"""

from graph.edges import FanOutSink
from learning.db import LearningDB
from learning.registry import PromptRegistry, PromptVersion, RegistryError
from learning.tracing import RolloutRecorder, RolloutTrace, SpanRecord

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
