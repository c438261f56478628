"""The settings reference (docs/settings.md) names every setting a user can set
(`AIMESH_<FIELD>`)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from foundation.settings import MemorySettings, Settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def _variables(model: type[BaseSettings], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            continue  # its own fields, under its own prefix
        names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_settings_reference() -> None:
    text = REFERENCE.read_text()
    variables = _variables(Settings, "AIMESH_") + _variables(MemorySettings, "AIMESH_MEMORY_")
    missing = [v for v in variables if not _named(v, text)]
    assert not missing, f"settings missing from docs/settings.md: {missing}"


def _named(variable: str, text: str) -> bool:
    """Named as is, or as the second of a pair: `AIMESH_X_HOST` / `_PORT`."""
    base, last = variable.rsplit("_", 1)
    return variable in text or re.search(rf"`{base}_\w+` / `_{last}`", text) is not None


def test_a_missing_setting_is_caught() -> None:
    text = "| `AIMESH_MEMORY_CHROMA_HOST` / `_PORT` | x |"
    assert _named("AIMESH_MEMORY_CHROMA_PORT", text)
    assert not _named("AIMESH_KAFKA_PORT", text)
