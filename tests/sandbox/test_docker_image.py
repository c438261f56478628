"""The docker backend's image, built offline from the host's Python: its root filesystem, its
content-hash tag, the build command, and the backend on it against the real engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from sandbox import SandboxError, SandboxJob, make_sandbox
from sandbox.docker import DockerSandbox
from sandbox.docker_image import (
    REPOSITORY,
    Entry,
    RootFs,
    docker_client,
    ensure_image,
    host_python_rootfs,
)


@pytest.fixture(scope="module")
def rootfs() -> RootFs:
    return host_python_rootfs()


def test_the_root_filesystem_holds_python_its_stdlib_sh_and_their_libraries(rootfs: RootFs) -> None:
    paths = {str(entry.path): entry for entry in rootfs.entries}
    python = next(p for p in paths if p.startswith("usr/") and p.endswith("/bin/python3"))
    assert paths[python].link is not None and paths[python].link.startswith("python3.")
    assert any(p.endswith("/os.py") and "/lib/python3." in p for p in paths)
    assert any(p.endswith("/sh") for p in paths)
    assert any(Path(p).name == "libc.so.6" for p in paths)  # linked by python, found by ldd
    assert any(Path(p).name.startswith("ld-linux") for p in paths)  # the dynamic loader
    assert any(Path(p).name.startswith("libsqlite3") for p in paths)  # linked by an extension
    assert not any("site-packages" in p or "dist-packages" in p for p in paths)


def test_the_tag_is_a_content_hash(tmp_path: Path) -> None:
    source = tmp_path / "hello.py"
    source.write_text("print('hello')\n")
    image = RootFs((Entry(PurePosixPath("usr/bin/hello.py"), source=source),))
    first = image.tag()
    assert first == image.tag() and first.startswith(f"{REPOSITORY}:")
    source.write_text("print('changed')\n")
    assert image.tag() != first


def test_the_tar_is_deterministic(tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.write_bytes(b"\x7fELF")
    source.chmod(0o4775)  # setuid and group-writable on the host: neither inside
    image = RootFs(
        (
            Entry(PurePosixPath("usr/bin/tool"), source=source),
            Entry(PurePosixPath("bin"), link="usr/bin"),
        )
    )
    packed = [io.BytesIO(), io.BytesIO()]
    for buffer in packed:
        image.write_tar(buffer)
    assert packed[0].getvalue() == packed[1].getvalue()
    with tarfile.open(fileobj=io.BytesIO(packed[0].getvalue())) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert list(members) == ["usr", "usr/bin", "bin", "usr/bin/tool"]  # parents first
    assert members["usr/bin/tool"].mode == 0o755 and members["bin"].linkname == "usr/bin"
    assert all(m.uid == m.gid == m.mtime == 0 for m in members.values())


def test_the_backend_runs_on_the_image_with_the_stdlib_extensions(docker: DockerSandbox) -> None:
    assert docker.image == host_python_rootfs().tag()
    code = "import ctypes, decimal, hashlib, lzma, sqlite3\ndef f():\n    return 1\n"
    result = docker.run(SandboxJob(code=code, tests=["assert f() == 1"], entry_point="f"))
    assert result.passed, result.traceback or result.stderr
    assert result.backend == "docker"


def test_an_unchanged_host_is_not_rebuilt(docker: DockerSandbox) -> None:
    assert ensure_image(docker_client()) == (docker.image, False)


def test_build_image_command(docker: DockerSandbox) -> None:
    result = CliRunner().invoke(app, ["sandbox", "build-image"])
    assert result.exit_code == 0, result.output
    assert f"{docker.image}: up to date" in result.output


def test_build_image_without_an_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = CliRunner().invoke(app, ["sandbox", "build-image"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_a_named_image_is_used_or_reported(docker: DockerSandbox) -> None:
    named = make_sandbox("docker", docker_image=docker.image)
    assert isinstance(named, DockerSandbox) and named.image == docker.image
    with pytest.raises(SandboxError) as error:
        make_sandbox("docker", docker_image="aimesh-test-missing:0")
    assert "cannot pull aimesh-test-missing:0" in str(error.value)
    assert "\n" not in str(error.value)


def test_an_image_that_cannot_be_built_names_the_command(
    docker: DockerSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ldd
    with pytest.raises(SandboxError) as error:
        DockerSandbox()
    assert str(error.value) == (
        "cannot build the sandbox image: `ldd` is not installed (try `aimesh sandbox build-image`)"
    )
