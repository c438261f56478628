"""The run-time embedder: a sentence-transformers model's ONNX export on ONNX Runtime, no torch.

The model's own tokenizer (`tokenizers`, from its `tokenizer.json`, truncated at its
`max_seq_length`), the transformer on ONNX Runtime, then what sentence-transformers does after it
for all-MiniLM-L6-v2: the mean of the token embeddings under the attention mask, L2-normalised.
The vectors are sentence-transformers' own to float rounding (checked at export and by a test),
so memories stored before stay valid. Loading costs about 0.3 s of CPU; the weights stay the
memory-mapped export's pages, shared by every process on the host, so each process adds only
about 10 MB of private memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from numpy.typing import NDArray
from tokenizers import Tokenizer

from memory.embedder import EMBEDDING_DIMS


class OnnxEmbedder:
    """Embeds texts with the ONNX export at `onnx_path` and the tokenizer of `model_dir`.

    `threads`: ONNX Runtime's intra-op threads (0: its default, one per core). Thread-safe:
    ONNX Runtime sessions may run concurrently; the tokenizer is used per call.
    """

    def __init__(self, onnx_path: Path, model_dir: Path, *, threads: int = 1) -> None:
        self.model_dir = model_dir
        config = _json(model_dir / "sentence_bert_config.json")
        self.lower_case = bool(config.get("do_lower_case", False))
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(int(config.get("max_seq_length", 256)))
        pad_token = str(_json(model_dir / "tokenizer_config.json").get("pad_token", "[PAD]"))
        pad_id = tokenizer.token_to_id(pad_token)
        tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
        self.tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Prepacking copies every weight matrix into private memory; without it the weights stay
        # the memory-mapped file's pages, which every process on the host shares.
        options.add_session_config_entry("session.disable_prepacking", "1")
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """One unit-length vector per text (a row each), as sentence-transformers' `encode`."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIMS), dtype=np.float32)
        if self.lower_case:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        tokens: NDArray[np.float32] = self.session.run(None, feeds)[0]
        return mean_pooled_unit(tokens, mask)


def mean_pooled_unit(tokens: NDArray[np.float32], mask: NDArray[np.int64]) -> NDArray[np.float32]:
    """sentence-transformers' mean pooling then Normalize: the mean of each text's token
    vectors where `mask` is 1, scaled to unit length."""
    weights = mask[..., None].astype(np.float32)
    summed = (tokens * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    unit: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return unit


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}
