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


def test_the_numpy_forward_pass_gives_sentence_transformers_vectors() -> None:
    """`memory.minilm` replaces torch for the packaged model: it must give the same vectors."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from memory.minilm import MiniLM, supports

    model_dir = default_model_dir()
    assert supports(model_dir)
    texts = [
        "Return the sum of two integers.",
        "Fix: AssertionError: reverse_words('a b c') == 'c b a'\n- return text[::-1]",
        "word " * 400,  # longer than max_seq_length: truncated alike
        "",
    ]
    ours = MiniLM(model_dir).encode(texts)
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(
        texts, convert_to_numpy=True
    )
    assert ours.shape == reference.shape == (4, 384)
    assert float(np.abs(ours - reference).max()) < 1e-5
    assert MiniLM(model_dir).encode(texts[0]).shape == (384,)


def test_other_models_are_left_to_sentence_transformers(tmp_path: Path) -> None:
    from memory.minilm import supports

    assert not supports(tmp_path)
