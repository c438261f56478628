"""The set-up step that exports the embedding model to ONNX once (torch; never at run time).

`export_embedder` traces the model's transformer with `torch.onnx.export` (input ids, attention
mask and token types in; the token embeddings out, batch and length dynamic), stores the weights
as external data beside the graph (ONNX Runtime memory-maps them), checks the export's vectors
against sentence-transformers' on a sample (cosine >= `MIN_COSINE`), checks the files' sha256
(pinned for the packaged model; recorded in a manifest for another one), and only then moves the
export into place. torch, transformers, onnx and sentence-transformers are set-up dependencies:
this module is imported only by `aimesh memory export-embedder`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel
from transformers.utils import logging as transformers_logging

from foundation.checksums import remember_sha256, sha256_of
from memory.embedder import (
    MANIFEST,
    ONNX_FILES,
    OnnxExport,
    expected_sha256,
    export_dir,
    is_packaged,
    onnx_export_of,
)
from memory.errors import MemoryUnavailableError
from memory.onnx_embedder import OnnxEmbedder

MIN_COSINE = 0.99
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SAMPLE = [
    "Write a function binary_search(xs, target) that returns the index of target in xs.",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "AssertionError: expected 3, got 2",
    "ok",
    "Rotate a square matrix by 90 degrees clockwise in place. " * 40,  # past max_seq_length
]
"""Texts of several lengths (padding in one batch) and one the tokenizer truncates."""


class EmbedderExportError(MemoryUnavailableError):
    """The export failed, or its vectors or digests are not what they must be."""


class _TokenEmbeddings(torch.nn.Module):
    """The transformer with keyword inputs and its token embeddings as the only output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def export_embedder(model_dir: Path, cache_dir: Path) -> tuple[OnnxExport, bool]:
    """The verified export of `model_dir`, made now unless a valid one is in the cache already;
    also whether it was made now."""
    try:
        return onnx_export_of(model_dir, cache_dir), False
    except MemoryUnavailableError:
        pass
    transformers_logging.disable_progress_bar()  # a bar per weights load
    final = export_dir(cache_dir, model_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=final.parent, prefix=f".{final.name}-", ignore_cleanup_errors=True
    ) as tmp_name:
        tmp = Path(tmp_name)
        _export(model_dir, tmp)
        cosine = min_cosine_to_sentence_transformers(OnnxEmbedder(tmp / ONNX_FILES[0], model_dir))
        if cosine < MIN_COSINE:
            raise EmbedderExportError(
                f"the ONNX export's vectors differ from sentence-transformers' (min cosine "
                f"{cosine:.4f} < {MIN_COSINE})"
            )
        digests = {name: sha256_of(tmp / name) for name in ONNX_FILES}
        if is_packaged(model_dir):
            _check_pinned(digests, expected_sha256(model_dir, tmp))
        else:
            (tmp / MANIFEST).write_text(json.dumps(digests, indent=2) + "\n")
        for name, digest in digests.items():
            remember_sha256(tmp / name, digest)
        if final.exists():  # a bad export, or one a concurrent set-up just made
            shutil.rmtree(final)
        os.replace(tmp, final)
        final.chmod(0o755)
    return onnx_export_of(model_dir, cache_dir), True


def _export(model_dir: Path, into: Path) -> None:
    """torch.onnx.export of the transformer into `into`, weights as external data."""
    model = _TokenEmbeddings(AutoModel.from_pretrained(str(model_dir))).eval()
    example = {
        "input_ids": torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "token_type_ids": torch.zeros(2, 4, dtype=torch.long),
    }
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "token_embeddings")}
    traced = into / "traced.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        # the tracer's notes on Python branches over shapes (the attention mask's padding)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")  # no negative ids
        torch.onnx.export(
            model,
            tuple(example[name] for name in INPUTS),
            str(traced),
            input_names=list(INPUTS),
            output_names=["token_embeddings"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: deterministic, no onnxscript needed
        )
    graph = onnx.load(str(traced))
    onnx.save_model(
        graph,
        str(into / ONNX_FILES[0]),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=ONNX_FILES[1],
        size_threshold=1024,
    )
    traced.unlink()


def min_cosine_to_sentence_transformers(embedder: OnnxEmbedder, texts: list[str] = SAMPLE) -> float:
    """The lowest cosine between `embedder`'s vector and sentence-transformers' for each text
    (embedded in one batch, with padding)."""
    reference = SentenceTransformer(str(embedder.model_dir), device="cpu")
    expected = np.asarray(reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True))
    actual = embedder.encode(texts)
    return float((expected * actual).sum(axis=1).min())


def _check_pinned(actual: dict[str, str], pinned: dict[str, str]) -> None:
    for name, digest in actual.items():
        if digest != pinned[name]:
            raise EmbedderExportError(
                f"the export's {name} has sha256 {digest}, expected {pinned[name]} (pinned for "
                "torch 2.13.0 and onnx 1.23.2: are other versions installed?)"
            )
