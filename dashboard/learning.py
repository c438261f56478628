"""The dashboard's learning view, read from the prompt registry (not from Kafka): every learning
round's candidate with its validation scores and the decision, newest first, and which adapter
each `consumer.adapter` version names (the consumer's steps report the version they used)."""

from __future__ import annotations

from typing import Any

from foundation.settings import Settings
from nodes.prompts import CONSUMER_ADAPTER, SEED_PROMPTS
from prompt_registry import PromptRegistry

DECISIONS = ("promoted", "rejected", "rolled_back")
"""Registry events that end a round (or undo one)."""


def learning_view(registry: PromptRegistry, limit: int = 30) -> dict[str, Any]:
    """Rounds (a candidate's decision: prompt, version, source, what it names or says, the
    gate's detail with its validation scores), the active version of every prompt, and the
    adapter each `consumer.adapter` version names."""
    rounds: list[dict[str, Any]] = []
    active: dict[str, str] = {}
    for name in sorted(registry.names()):
        versions = {v.version: v for v in registry.history(name)}
        active[name] = registry.current(name).version
        for event in registry.events(name):
            if event.event not in DECISIONS:
                continue
            version = versions.get(event.version)
            rounds.append(
                {
                    "at": event.at,
                    "prompt": name,
                    "version": event.version,
                    "decision": event.event,
                    "source": version.source if version else "",
                    "text": _label(version.text if version else ""),
                    "detail": event.detail,
                }
            )
    adapters = {v.version: v.text or "none" for v in registry.history(CONSUMER_ADAPTER)}
    rounds.sort(key=lambda r: r["at"], reverse=True)
    return {"rounds": rounds[:limit], "active": active, "adapters": adapters}


def registry_view(settings: Settings) -> dict[str, Any]:
    """`learning_view` of the registry the settings name (the data dir's, or the mesh's
    database)."""
    registry = PromptRegistry.for_settings(settings, SEED_PROMPTS)
    try:
        return learning_view(registry)
    finally:
        registry.db.close()


def _label(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
