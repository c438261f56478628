"""DockerSandbox: run the harness in a throw-away container per job (extra `ai-mesh[docker]`).

The container runs as nobody with no network and no capabilities. Its work dir belongs to root
and holds the harness, the job and the one file nobody may write (the result, size-capped by
RLIMIT_FSIZE); every world-writable directory is a size-capped tmpfs, so the code cannot fill
the host's disk through the container's writable layer.
"""

from __future__ import annotations

import contextlib
import io
import math
import tarfile
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sandbox.base import SandboxError, first_line
from sandbox.protocol import OUTPUT_LIMIT, HarnessRun, HarnessSandbox, decode_output, harness_source

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

IMAGE = "python:3.11-slim"
WORKDIR = "/sandbox"
RESULT = "result.jsonl"
NOBODY = 65534
DISK_BYTES = 64 * 1024 * 1024
MAX_TASKS = 64
MAX_OPEN_FILES = 256


def _work_dir(payload: bytes) -> bytes:
    """The work dir as a tar archive: read-only harness and job, an empty result owned by nobody."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo(WORKDIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for name, data in (("harness.py", harness_source()), ("job.bin", payload)):
            member = tarfile.TarInfo(f"{folder.name}/{name}")
            member.size, member.mode = len(data), 0o444
            archive.addfile(member, io.BytesIO(data))
        result = tarfile.TarInfo(f"{folder.name}/{RESULT}")
        result.mode, result.uid, result.gid = 0o600, NOBODY, NOBODY
        archive.addfile(result)
    return buffer.getvalue()


class DockerSandbox(HarnessSandbox):
    """One container per harness run: no network, no capabilities, nobody, capped memory/pids/
    files; same harness and same judging as local."""

    name = "docker"

    def __init__(
        self, *, timeout_s: float = 10.0, memory_mb: int = 512, allow_unisolated: bool = False
    ) -> None:
        super().__init__(
            timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated
        )
        try:
            import docker
        except ImportError:
            raise SandboxError(
                "the docker sandbox needs the docker SDK: pip install 'ai-mesh[docker]'"
            ) from None
        self._sdk: ModuleType = docker
        try:
            self._client: DockerClient = docker.from_env()
            self._client.ping()
            self._client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            self._pull()
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"Docker engine not reachable ({first_line(exc)}): start Docker or choose another "
                "sandbox (AIMESH_SANDBOX=local)"
            ) from None

    def _pull(self) -> None:
        try:
            self._client.images.pull(IMAGE)
        except self._sdk.errors.DockerException as exc:
            raise SandboxError(f"cannot pull {IMAGE}: {first_line(exc)}") from None

    def run_harness(self, payload: bytes, *, timeout_s: float, memory_mb: int) -> HarnessRun:
        """Create the container, copy harness and job in, run, read the events back, remove it."""
        import requests

        errors = self._sdk.errors
        try:
            container = self._create(timeout_s, memory_mb)
        except errors.DockerException as exc:
            raise SandboxError(
                f"Docker could not create the container: {first_line(exc)}"
            ) from None
        try:
            container.put_archive("/", _work_dir(payload))
            started = time.monotonic()
            container.start()
            timed_out = False
            try:
                status = container.wait(timeout=timeout_s)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                status = container.wait()
            duration_s = time.monotonic() - started
            stdout = container.logs(stdout=True, stderr=False)
            stderr = container.logs(stdout=False, stderr=True)
            events = self._read_events(container)
        except (errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"Docker run failed: {first_line(exc)}") from None
        finally:
            with contextlib.suppress(errors.DockerException):  # the engine may be gone
                container.remove(force=True)
        return HarnessRun(
            channel=events,
            stdout=decode_output(stdout),
            stderr=decode_output(stderr),
            exit_code=int(status.get("StatusCode", -1)),
            timed_out=timed_out,
            duration_s=duration_s,
        )

    def _create(self, timeout_s: float, memory_mb: int) -> Container:
        ulimit = self._sdk.types.Ulimit
        cpu_s = math.ceil(timeout_s) + 1
        options: dict[str, Any] = {
            "command": [
                "sh", "-c", f"exec python3 -E -s -S harness.py --result-file {RESULT} < job.bin"
            ],
            "user": f"{NOBODY}:{NOBODY}",
            "working_dir": WORKDIR,
            "network_disabled": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": f"{memory_mb}m",
            "memswap_limit": f"{memory_mb}m",
            "pids_limit": MAX_TASKS,
            "tmpfs": {path: f"size={DISK_BYTES}" for path in ("/tmp", "/var/tmp", "/run/lock")},
            "ulimits": [
                ulimit(name="cpu", soft=cpu_s, hard=cpu_s + 1),
                ulimit(name="fsize", soft=DISK_BYTES, hard=DISK_BYTES),
                ulimit(name="nofile", soft=MAX_OPEN_FILES, hard=MAX_OPEN_FILES),
                ulimit(name="core", soft=0, hard=0),
            ],
            "log_config": self._sdk.types.LogConfig(
                type="json-file", config={"max-size": f"{OUTPUT_LIMIT * 2}"}
            ),
        }  # fmt: skip
        container: Container = self._client.containers.create(IMAGE, **options)
        return container

    def _read_events(self, container: Container) -> bytes:
        """The harness's result file, or nothing if it never wrote one."""
        try:
            chunks, _ = container.get_archive(f"{WORKDIR}/{RESULT}")
        except self._sdk.errors.NotFound:
            return b""
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member else None
            return extracted.read() if extracted else b""
