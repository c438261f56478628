"""The engine's build cache: keyed on this CPU, verified by sha256, a clear line when missing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from llm import engine_build
from llm.engine_build import MANIFEST, Engine, EngineError, build_key, engine_dir, find_engine


def _fake_build(cache: Path) -> Path:
    """A cache entry shaped like a real build (the binaries are stand-in bytes)."""
    root = engine_dir(cache)
    (root / "bin").mkdir(parents=True)
    digests = {}
    for name in ("bin/llama-server", "bin/llama-bench"):
        (root / name).write_bytes(name.encode())
        digests[name] = hashlib.sha256(name.encode()).hexdigest()
    (root / MANIFEST).write_text(json.dumps(digests))
    return root


def test_the_cache_key_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_build, "cpu_flags", lambda: "avx avx2 fma")
    here = build_key()
    assert build_key() == here
    monkeypatch.setattr(engine_build, "cpu_flags", lambda: "avx avx2 avx512f fma")
    assert build_key() != here  # a cache restored on another CPU is not this CPU's build


def test_no_build_names_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"not built for this CPU .*run `make setup`"):
        find_engine(tmp_path)


def test_a_verified_build_is_found_and_a_changed_one_refused(tmp_path: Path) -> None:
    root = _fake_build(tmp_path)
    engine = find_engine(tmp_path)
    assert engine.server == root / "bin" / "llama-server"
    (root / "bin" / "llama-server").write_bytes(b"tampered")
    with pytest.raises(EngineError, match="checksum mismatch"):
        find_engine(tmp_path)
    (root / "bin" / "llama-bench").unlink()
    with pytest.raises(EngineError, match=r"missing|checksum"):
        find_engine(tmp_path)


def test_this_machines_build_runs(engine: Engine) -> None:
    """The build set-up made (CI builds it): it verifies, and both binaries start."""
    for binary in (engine.server, engine.bench):
        proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-500:]
    assert engine.lora_converter.is_file() and (engine.gguf_py / "gguf").is_dir()
