"""sha256 of files, and a digest cached beside its file so a large file is hashed once.

The cache is a ``<file>.sha256`` sidecar keyed by the file's size and mtime: a file that
changed (either of them) is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

CHUNK = 1 << 20


def sha256_of(path: Path, on_chunk: Callable[[int], None] | None = None) -> str:
    """The sha256 hex digest of a file; `on_chunk(n)` after each chunk of n bytes (progress)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return digest.hexdigest()


def cached_sha256(path: Path, compute: Callable[[Path], str] = sha256_of) -> str:
    """The sha256 of `path`: from its sidecar when size and mtime still match, else
    `compute(path)`, then remembered in the sidecar (a read-only directory just hashes again)."""
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = sidecar_of(path)
    try:
        cached = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        cached = None
    if isinstance(cached, dict) and {k: cached.get(k) for k in key} == key:
        digest = cached.get("sha256")
        if isinstance(digest, str):
            return digest
    digest = compute(path)
    remember_sha256(path, digest)
    return digest


def remember_sha256(path: Path, digest: str) -> None:
    """Write `path`'s sidecar with `digest` (known already, e.g. computed while writing)."""
    stat = path.stat()
    with suppress(OSError):
        sidecar_of(path).write_text(
            json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest})
        )


def sidecar_of(path: Path) -> Path:
    """Where the digest of `path` is cached."""
    return path.with_name(path.name + ".sha256")
