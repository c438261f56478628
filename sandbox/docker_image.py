"""The docker backend's default image, built offline from the host's Python: no registry needed.

The image is a root filesystem holding the interpreter the local backend runs (the host's
/usr/bin/python3.11 where there is one), its standard library, /bin/sh (the backend's command
runs through it) and every shared library they and the standard library's extension modules
link (found with `ldd`), copied with symlinks dereferenced; directories the host links at the
top (lib -> usr/lib on a merged-/usr system) are the same links inside. It is packed as a tar
with fixed metadata and loaded with `docker import`. The tag is a sha256 of that content (each
file's path, mode and bytes, each link's target), so an unchanged host gives the same tag and a
rebuild is skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from sandbox.base import SandboxError, first_line
from sandbox.local import sandbox_python

if TYPE_CHECKING:
    from docker import DockerClient

REPOSITORY = "aimesh-python"
BUILD_COMMAND = "aimesh sandbox build-image"
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SKIPPED_STDLIB = ("site-packages", "dist-packages", "test")  # installed packages, its own tests
SKIPPED_STDLIB_PREFIX = "config-"  # the static libpython and its Makefile: build-time only
CHANGES = ["ENV PATH=/usr/local/bin:/usr/bin:/bin", "LABEL org.aimesh.image=python-rootfs"]
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


@dataclass(frozen=True)
class Entry:
    """One member of the root filesystem: a host file copied in, or a symlink."""

    path: PurePosixPath  # inside the image, relative to /
    source: Path | None = None  # the host file (dereferenced)
    link: str | None = None  # the symlink's target


@dataclass(frozen=True)
class RootFs:
    """The image's root filesystem, ready to pack."""

    entries: tuple[Entry, ...]

    def write_tar(self, out: IO[bytes]) -> None:
        """Pack as a plain tar: sorted, owned by root, mtime 0 (equal content, equal tar)."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for directory in self._directories():
                archive.addfile(_info(directory, tarfile.DIRTYPE, 0o755))
            for entry in sorted(self.entries, key=lambda e: e.path):
                if entry.link is not None:
                    info = _info(entry.path, tarfile.SYMTYPE, 0o777)
                    info.linkname = entry.link
                    archive.addfile(info)
                    continue
                assert entry.source is not None
                with entry.source.open("rb") as data:
                    info = _info(entry.path, tarfile.REGTYPE, _mode(entry.source))
                    info.size = os.fstat(data.fileno()).st_size
                    archive.addfile(info, data)

    def digest(self) -> str:
        """The sha256 of every entry: its path, and its mode and content's sha256, or its target."""
        hasher = hashlib.sha256()
        for entry in sorted(self.entries, key=lambda e: e.path):
            if entry.link is not None:
                hasher.update(f"link {entry.path} {entry.link}\n".encode())
                continue
            assert entry.source is not None
            with entry.source.open("rb") as data:
                content = hashlib.file_digest(data, "sha256").hexdigest()
            hasher.update(f"file {entry.path} {_mode(entry.source):o} {content}\n".encode())
        return hasher.hexdigest()

    def tag(self) -> str:
        """The image's name: the repository and the first 16 hex digits of the content hash."""
        return f"{REPOSITORY}:{self.digest()[:16]}"

    def _directories(self) -> list[PurePosixPath]:
        """Every parent directory of an entry, parents first (symlinked top levels excluded)."""
        links = {entry.path for entry in self.entries if entry.link is not None}
        found = {parent for entry in self.entries for parent in entry.path.parents}
        found.discard(PurePosixPath("."))
        return sorted(found - links)


def _info(path: PurePosixPath, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(str(path))
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _mode(source: Path) -> int:
    """Executable or not; never writable by others, never setuid."""
    return 0o755 if os.stat(source).st_mode & stat.S_IXUSR else 0o644


def host_python_rootfs() -> RootFs:
    """The root filesystem of the local backend's interpreter, its stdlib and /bin/sh."""
    python = Path(sandbox_python()[0])
    stdlib = python.parent.parent / "lib" / python.name
    if not (stdlib / "os.py").is_file():
        raise SandboxError(f"cannot build the sandbox image: no stdlib for {python} at {stdlib}")
    shell = Path("/bin/sh")
    extensions = sorted((stdlib / "lib-dynload").glob("*.so"))
    entries = [*_program(python), *_program(shell)]
    entries.append(Entry(_inside(python).with_name("python3"), link=python.name))
    entries += [Entry(_inside(path), source=path) for path in _stdlib_files(stdlib)]
    entries += [
        Entry(_inside(path), source=path) for path in linked_libraries([python, shell, *extensions])
    ]
    entries += [
        Entry(PurePosixPath(name), link=os.readlink(f"/{name}"))
        for name in TOP_LEVEL_LINKS
        if os.path.islink(f"/{name}")
    ]
    unique = {entry.path: entry for entry in entries}  # a library may be found more than once
    return RootFs(tuple(unique.values()))


def _inside(path: Path) -> PurePosixPath:
    """Where a host path goes in the image: its directory resolved (lib -> usr/lib), its name
    kept (the soname, not the versioned file it links to)."""
    return PurePosixPath(os.path.realpath(path.parent), path.name).relative_to("/")


def _program(path: Path) -> list[Entry]:
    """A program, copied where its real file is, and linked from the name it was asked by."""
    real = Path(os.path.realpath(path))
    entries = [Entry(_inside(real), source=real)]
    if _inside(path) != _inside(real):
        target = os.path.relpath(f"/{_inside(real)}", f"/{_inside(path).parent}")
        entries.append(Entry(_inside(path), link=target))
    return entries


def _stdlib_files(stdlib: Path) -> Iterator[Path]:
    """Every file of the standard library (its byte-code caches included: the sandbox user
    cannot write them), symlinks followed, broken ones and installed packages skipped."""
    for folder, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_STDLIB and not d.startswith(SKIPPED_STDLIB_PREFIX)
        )
        for name in sorted(names):
            path = Path(folder, name)
            if path.is_file():
                yield path


def linked_libraries(binaries: Iterable[Path]) -> list[Path]:
    """The shared libraries (and the dynamic loader) the binaries link, as `ldd` lists them."""
    try:
        listed = subprocess.run(
            ["ldd", *map(str, binaries)], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise SandboxError("cannot build the sandbox image: `ldd` is not installed") from None
    found = {Path(match.group(1)) for match in _LDD_PATH.finditer(listed.stdout)}
    if not found:
        raise SandboxError(
            f"cannot build the sandbox image: ldd listed no libraries ({first_line(listed.stderr)})"
        )
    return sorted(found)


def docker_client() -> DockerClient:
    """A client of the engine the environment names (DOCKER_HOST, else the local socket),
    checked to answer; SandboxError (one line) if the SDK is missing or the engine is not there."""
    try:
        import docker
    except ImportError:
        raise SandboxError(
            "the docker sandbox needs the docker SDK: pip install 'ai-mesh[docker]'"
        ) from None
    try:
        client: DockerClient = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(
            f"Docker engine not reachable ({first_line(exc)}): start Docker or choose another "
            "sandbox (AIMESH_SANDBOX=local)"
        ) from None
    return client


def ensure_image(client: DockerClient, rootfs: RootFs | None = None) -> tuple[str, bool]:
    """The tag of the host-Python image, imported into the engine unless it is already there;
    and whether it was built now. Raise SandboxError (one line) if it cannot be built."""
    import docker

    rootfs = rootfs or host_python_rootfs()
    tag = rootfs.tag()
    try:
        client.images.get(tag)
        return tag, False
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        raise SandboxError(f"Docker engine not reachable: {first_line(exc)}") from None
    repository, version = tag.split(":")
    with tempfile.TemporaryFile() as packed:
        rootfs.write_tar(packed)
        packed.seek(0)
        try:
            client.api.import_image_from_data(
                packed, repository=repository, tag=version, changes=CHANGES
            )
            client.images.get(tag)
        except docker.errors.DockerException as exc:
            raise SandboxError(f"docker import of {tag} failed: {first_line(exc)}") from None
    return tag, True
