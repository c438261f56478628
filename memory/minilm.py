"""all-MiniLM-L6-v2 in numpy: the sentence-transformers model (BERT, mean pooling, L2 normalise)
computed without torch.

Importing torch, transformers and sentence-transformers takes about 4 s on an idle 2-core VM
(10-20 s under load) and about 500 MB; this forward pass needs numpy, the `tokenizers` library
and `safetensors`, loads in about 0.3 s and gives the same vectors (largest difference from
`SentenceTransformer.encode` below 1e-6, checked by tests/memory/test_embedder.py). Used for any
sentence-transformers directory holding a BERT encoder with mean pooling and normalisation (the
packaged model); anything else goes to sentence-transformers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]

_POOLING = "sentence_transformers.models.Pooling"
_ERF = np.frompyfunc(math.erf, 1, 1)


def supports(model_dir: Path) -> bool:
    """Is `model_dir` a sentence-transformers BERT model with mean pooling and normalisation?"""
    try:
        modules = [m["type"] for m in json.loads((model_dir / "modules.json").read_text())]
        config = json.loads((model_dir / "config.json").read_text())
        pooling_path = next(
            m["path"]
            for m in json.loads((model_dir / "modules.json").read_text())
            if m["type"] == _POOLING
        )
        pooling = json.loads((model_dir / pooling_path / "config.json").read_text())
    except (OSError, ValueError, KeyError, StopIteration):
        return False
    return (
        modules
        == [
            "sentence_transformers.models.Transformer",
            _POOLING,
            "sentence_transformers.models.Normalize",
        ]
        and config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and pooling.get("pooling_mode_mean_tokens") is True
        and not any(
            pooling.get(k)
            for k in (
                "pooling_mode_cls_token",
                "pooling_mode_max_tokens",
                "pooling_mode_mean_sqrt_len_tokens",
            )
        )
        and (model_dir / "model.safetensors").is_file()
        and (model_dir / "tokenizer.json").is_file()
    )


class MiniLM:
    """`encode(text)` / `encode(texts)` like `SentenceTransformer.encode(..., convert_to_numpy=True)`."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = np.float32(config["layer_norm_eps"])
        weights = load_file(str(model_dir / "model.safetensors"))
        self.w: dict[str, Vector] = {
            name.removeprefix("bert."): value.astype(np.float32) for name, value in weights.items()
        }
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(st_config.get("max_seq_length", 256)))
        self.tokenizer.no_padding()

    def encode(self, text: str | list[str], **_: Any) -> Vector:
        """One vector for a string, a matrix (one row per text) for a list."""
        if isinstance(text, str):
            return self._one(text)
        if not text:
            return np.zeros((0, self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        return np.stack([self._one(t) for t in text])

    def _norm(self, x: Vector, prefix: str) -> Vector:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        out: Vector = (x - mean) / np.sqrt(var + self.eps) * self.w[f"{prefix}.weight"]
        return out + self.w[f"{prefix}.bias"]

    def _dense(self, x: Vector, prefix: str) -> Vector:
        out: Vector = x @ self.w[f"{prefix}.weight"].T + self.w[f"{prefix}.bias"]
        return out

    def _one(self, text: str) -> Vector:
        ids = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        n, w = len(ids), self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        heads = self.heads
        size = x.shape[1] // heads
        scale = np.float32(math.sqrt(size))
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"

            q, k, v = (
                self._dense(x, f"{layer}.attention.self.{name}")
                .reshape(n, heads, size)
                .transpose(1, 0, 2)
                for name in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / scale
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
            attended = self._dense(context, f"{layer}.attention.output.dense")
            x = self._norm(x + attended, f"{layer}.attention.output.LayerNorm")
            hidden = self._dense(x, f"{layer}.intermediate.dense")
            erf = _ERF(hidden.astype(np.float64) / math.sqrt(2.0)).astype(np.float32)
            hidden = 0.5 * hidden * (1.0 + erf)  # exact GELU, as BERT's "gelu"
            x = self._norm(
                x + self._dense(hidden, f"{layer}.output.dense"), f"{layer}.output.LayerNorm"
            )
        pooled = x.mean(0)
        result: Vector = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return result
