"""The packaged embedding model: present, upstream-identical, found without the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory.embedder import (
    EmbedderNotFoundError,
    default_model_dir,
    resolve_model_dir,
    verify_model_files,
)


def test_packaged_model_is_byte_identical_to_upstream() -> None:
    model_dir = default_model_dir()
    assert (model_dir / "modules.json").is_file()
    assert verify_model_files(model_dir) == {
        "model.safetensors": True,
        "tokenizer.json": True,
        "vocab.txt": True,
        "config.json": True,
    }


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbedderNotFoundError, match=r"modules\.json"):
        resolve_model_dir(tmp_path)
