"""E2BSandbox: run the harness in a fresh E2B cloud sandbox per job (extra `ai-mesh[e2b]`)."""

from __future__ import annotations

import contextlib
import os
import time
from types import ModuleType
from typing import TYPE_CHECKING

from sandbox.base import SandboxError, first_line
from sandbox.protocol import HarnessRun, HarnessSandbox, decode_output, harness_source

if TYPE_CHECKING:
    from e2b_code_interpreter import Sandbox as RemoteSandbox

WORKDIR = "/home/user/aimesh"
REQUEST_TIMEOUT_S = 30.0
NOBODY = 65534  # the uid a test runner becomes once its job and result are open
SANDBOX_GRACE_S = 60  # the VM outlives the job's own timeout by this much, then E2B reaps it


class E2BSandbox(HarnessSandbox):
    """One E2B sandbox (a Firecracker VM, no internet access) per harness run; same harness and
    same judging as local."""

    name = "e2b"

    def __init__(
        self, *, timeout_s: float = 10.0, memory_mb: int = 512, allow_unisolated: bool = False
    ) -> None:
        super().__init__(
            timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated
        )
        try:
            import e2b_code_interpreter
        except ImportError:
            raise SandboxError(
                "the e2b sandbox needs e2b-code-interpreter: pip install 'ai-mesh[e2b]'"
            ) from None
        if not os.environ.get("E2B_API_KEY"):
            raise SandboxError(
                "E2B_API_KEY is not set: create a key at https://e2b.dev/dashboard and export it, "
                "or choose another sandbox (AIMESH_SANDBOX=local)"
            )
        self._sdk: ModuleType = e2b_code_interpreter

    def run_harness(self, payload: bytes, *, timeout_s: float, memory_mb: int) -> HarnessRun:
        """Create a sandbox, upload harness and job, run, read the events back, kill it.

        `memory_mb` is not applied: memory is fixed by the E2B template. The job and the result
        are root's alone: the harness starts as root and becomes nobody (E2B's own user may use
        sudo) once they are open.
        """
        import httpx

        e2b = self._sdk
        try:
            remote = e2b.Sandbox.create(
                timeout=int(timeout_s) + SANDBOX_GRACE_S,
                allow_internet_access=False,
                request_timeout=REQUEST_TIMEOUT_S,
            )
        except e2b.AuthenticationException as exc:
            raise SandboxError(f"E2B rejected the API key: {first_line(exc)}") from None
        except (httpx.HTTPError, e2b.SandboxException) as exc:
            raise SandboxError(
                f"E2B is unreachable ({first_line(exc)}): check the network or choose another "
                "sandbox (AIMESH_SANDBOX=local)"
            ) from None
        try:
            return self._run_in(remote, payload, timeout_s)
        except (httpx.HTTPError, e2b.SandboxException) as exc:
            raise SandboxError(f"E2B sandbox failed: {first_line(exc)}") from None
        finally:
            with contextlib.suppress(httpx.HTTPError, e2b.SandboxException):
                remote.kill()  # if this fails, E2B reaps the VM at its own timeout

    def _run_in(self, remote: RemoteSandbox, payload: bytes, timeout_s: float) -> HarnessRun:
        e2b = self._sdk
        files, commands = remote.files, remote.commands
        files.write(f"{WORKDIR}/harness.py", harness_source())
        files.write(f"{WORKDIR}/job.bin", payload)
        command = (  # the job, uploaded by E2B's user, becomes root's alone before the run
            "chown root:root job.bin && chmod 400 job.bin && python3 -E -s -S harness.py "
            f"--result-file result.jsonl --user {NOBODY} < job.bin"
        )
        started = time.monotonic()
        timed_out = False
        try:
            outcome = commands.run(command, cwd=WORKDIR, timeout=timeout_s, user="root")
        except e2b.CommandExitException as exc:
            outcome = exc
        except e2b.TimeoutException:
            outcome, timed_out = None, True
        duration_s = time.monotonic() - started
        try:
            events = bytes(files.read(f"{WORKDIR}/result.jsonl", format="bytes", user="root"))
        except e2b.FileNotFoundException:
            events = b""
        return HarnessRun(
            channel=events,
            stdout=decode_output((outcome.stdout or "").encode() if outcome else b""),
            stderr=decode_output((outcome.stderr or "").encode() if outcome else b""),
            exit_code=outcome.exit_code if outcome else None,
            timed_out=timed_out,
            duration_s=duration_s,
        )
