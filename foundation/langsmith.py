"""LangSmith tracing: on only when asked for AND a key is set; otherwise nothing is sent and
nothing waits on the network."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

_SWITCHES = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2")
_KEYS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


def configure_tracing() -> bool:
    """Decide once per process whether runs are traced to LangSmith; returns the decision.

    Tracing requested without a key is switched off (with a warning) rather than left to
    retry uploads in the background.
    """
    requested = any(os.environ.get(s, "").lower() in ("1", "true", "yes") for s in _SWITCHES)
    has_key = any(os.environ.get(k) for k in _KEYS)
    if requested and has_key:
        project = os.environ.get("LANGSMITH_PROJECT", "default")
        log.info("LangSmith tracing is on (project %s)", project)
        return True
    if requested:
        log.warning("LANGSMITH_TRACING is set but LANGSMITH_API_KEY is not: tracing is off")
    for switch in _SWITCHES:
        os.environ[switch] = "false"
    return False
