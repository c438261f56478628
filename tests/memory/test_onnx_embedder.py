"""The ONNX embedder: sentence-transformers' vectors without torch, from a verified export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from memtest import BINARY_SEARCH, BINARY_SEARCH_FIXED, FIBONACCI, TIMEOUT_ERROR, UNRELATED

from memory.embedder import (
    EMBEDDING_DIMS,
    ONNX_FILES,
    EmbedderNotFoundError,
    OnnxExport,
    export_dir,
    onnx_export_of,
)
from memory.onnx_embedder import OnnxEmbedder, mean_pooled_unit
from memory.onnx_export import min_cosine_to_sentence_transformers

SAMPLE = [
    BINARY_SEARCH,
    BINARY_SEARCH_FIXED,
    FIBONACCI,
    TIMEOUT_ERROR,
    *UNRELATED,
    "x",
    "é 東京 🚀",
]


@pytest.fixture(scope="module")
def embedder(embedder_export: OnnxExport) -> OnnxEmbedder:
    return OnnxEmbedder(embedder_export.onnx_path, embedder_export.model_dir)


def test_vectors_are_sentence_transformers_vectors(embedder: OnnxEmbedder) -> None:
    # one batch (so with padding), and a text past the 256-token truncation
    assert min_cosine_to_sentence_transformers(embedder, [*SAMPLE, BINARY_SEARCH * 30]) >= 0.99


def test_a_text_gets_the_same_vector_alone_and_in_a_batch(embedder: OnnxEmbedder) -> None:
    batch = embedder.encode(SAMPLE)
    alone = np.stack([embedder.encode([text])[0] for text in SAMPLE])
    assert batch.shape == (len(SAMPLE), EMBEDDING_DIMS)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert float((batch * alone).sum(axis=1).min()) > 0.9999


def test_mean_pooling_ignores_padding() -> None:
    tokens = np.array([[[3.0, 0.0], [1.0, 0.0], [0.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(mean_pooled_unit(tokens, mask), [[1.0, 0.0]])


def _copy_export(export: OnnxExport, cache_dir: Path) -> Path:
    target = export_dir(cache_dir, export.model_dir)
    target.mkdir(parents=True)
    for name in ONNX_FILES:
        shutil.copy(export.onnx_path.parent / name, target / name)
    return target


def test_a_missing_export_names_the_set_up_command(
    embedder_export: OnnxExport, tmp_path: Path
) -> None:
    with pytest.raises(EmbedderNotFoundError, match="aimesh memory export-embedder"):
        onnx_export_of(embedder_export.model_dir, tmp_path)


def test_a_changed_export_is_refused(embedder_export: OnnxExport, tmp_path: Path) -> None:
    target = _copy_export(embedder_export, tmp_path)
    assert onnx_export_of(embedder_export.model_dir, tmp_path).onnx_path == target / "model.onnx"
    graph = target / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(EmbedderNotFoundError, match="checksum mismatch"):
        onnx_export_of(embedder_export.model_dir, tmp_path)
