"""The dashboard's learning view, read from the prompt registry (not from Kafka): every learning
round's candidate with its validation scores and the decision, newest first, and which adapter
each `consumer.adapter` version names (the consumer's steps report the version they used)."""

from __future__ import annotations

import threading
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


class RegistryReader:
    """`learning_view` of the registry the settings name (the data dir's, or the mesh's
    database), opened on the first read and kept for the next ones (the page polls it); a read
    that fails closes it, so the next one opens it afresh (a restarted database, a moved file)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: PromptRegistry | None = None
        self._lock = threading.Lock()

    def view(self) -> dict[str, Any]:
        with self._lock:
            if self._registry is None:
                self._registry = PromptRegistry.for_settings(self.settings, SEED_PROMPTS)
            try:
                return learning_view(self._registry)
            except Exception:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._registry is not None:
            self._registry.db.close()
            self._registry = None


def _label(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
