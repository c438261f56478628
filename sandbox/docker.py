"""DockerSandbox: run the harness in a throw-away container per job (extra `ai-mesh[docker]`).

The image is the one built offline from the host's Python (`aimesh sandbox build-image`, built on
first use), or any image with `sh` and `python3` named by `AIMESH_SANDBOX_DOCKER_IMAGE`.

The container starts as root with no network and no capability but CAP_SETUID and CAP_SETGID:
its work dir holds the harness, the job and the result (size-capped by RLIMIT_FSIZE), the last
two root's alone; the harness reads the job and opens the result, then becomes nobody for good
(`--user`) before any code runs, so the code can neither open the result again nor read a test
runner's tests. Memory is capped by the cgroup and by RLIMIT_AS (an allocation fails with
MemoryError, as in the local backend); every world-writable directory is a size-capped tmpfs, so
the code cannot fill the host's disk through the container's writable layer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tarfile
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sandbox.base import SandboxError, first_line
from sandbox.docker_image import BUILD_COMMAND, docker_client, ensure_image
from sandbox.protocol import OUTPUT_LIMIT, HarnessRun, HarnessSandbox, decode_output, harness_source

if TYPE_CHECKING:
    from docker.models.containers import Container

log = logging.getLogger(__name__)

WORKDIR = "/sandbox"
HARNESS = f"{WORKDIR}/harness.py"  # read-only, owned by root
RESULT = "result.jsonl"
NOBODY = 65534
DISK_BYTES = 64 * 1024 * 1024
MAX_TASKS = 64
MAX_OPEN_FILES = 256


def _work_dir(payload: bytes) -> bytes:
    """The work dir as a tar archive: the harness, and the job and an empty result root's alone."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo(WORKDIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for name, data, mode in (
            ("harness.py", harness_source(), 0o444),
            ("job.bin", payload, 0o400),
        ):
            member = tarfile.TarInfo(f"{folder.name}/{name}")
            member.size, member.mode = len(data), mode
            archive.addfile(member, io.BytesIO(data))
        result = tarfile.TarInfo(f"{folder.name}/{RESULT}")
        result.mode = 0o600
        archive.addfile(result)
    return buffer.getvalue()


class DockerSandbox(HarnessSandbox):
    """One container per harness run: no network, no capabilities, nobody, capped memory/pids/
    files; same harness and same judging as local."""

    name = "docker"

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        allow_unisolated: bool = False,
        image: str | None = None,
    ) -> None:
        """`image`: any image with `sh` and `python3` (3.10+), pulled if missing; None: the image
        built offline from the host's Python (sandbox.docker_image), built now if missing."""
        super().__init__(
            timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated
        )
        self._client = docker_client()
        import docker  # present: docker_client() imported it

        self._sdk: ModuleType = docker
        self.image = self._named(image) if image else self._built()

    def _named(self, image: str) -> str:
        """The configured image, pulled if the engine does not have it."""
        errors = self._sdk.errors
        try:
            self._client.images.get(image)
        except errors.ImageNotFound:
            try:
                self._client.images.pull(image)
            except errors.DockerException as exc:
                raise SandboxError(f"cannot pull {image}: {first_line(exc)}") from None
        except errors.DockerException as exc:
            raise SandboxError(f"Docker cannot look up {image}: {first_line(exc)}") from None
        return image

    def _built(self) -> str:
        """The host-Python image, built now (once: a few seconds) if the engine does not have it."""
        try:
            tag, built = ensure_image(self._client)
        except SandboxError as exc:
            raise SandboxError(f"{exc} (try `{BUILD_COMMAND}`)") from None
        if built:
            log.warning("sandbox: built the docker image %s from the host's Python", tag)
        return tag

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
                duration_s = time.monotonic() - started
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out, duration_s = True, time.monotonic() - started  # not the tear-down
                container.kill()
                status = container.wait()
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
            "command": [  # RLIMIT_AS set by the shell: as a docker ulimit it starves runc's init
                "sh", "-c", f"ulimit -v {memory_mb * 1024} && exec python3 -E -s -S harness.py "
                f"--result-file {RESULT} --user {NOBODY} < job.bin",
            ],
            "user": "0:0",
            "working_dir": WORKDIR,
            "network_disabled": True,
            "cap_drop": ["ALL"],
            "cap_add": ["SETUID", "SETGID"],  # for `--user` alone: gone once the harness used it
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
        container: Container = self._client.containers.create(self.image, **options)
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
