"""Hostile code against each real isolating backend (local, docker): each attack must be
contained and the host fine. Where the backends differ by design, `EXPECTED` says how."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import resource
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import ExecutionResult, SandboxJob
from sandbox.local import DISK_BYTES, MAX_TASKS
from sandbox.protocol import HarnessSandbox

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Expected:
    """What a backend does by design where the backends differ."""

    capped_dirs: tuple[str, ...]  # writable by the code, each up to DISK_BYTES
    host_only: frozenset[str]  # names in the host's / that must not be in the sandbox's
    inet_errno: int  # connecting to a listener on the host's 127.0.0.1
    counts_dropped_output: bool  # the output cap reports exactly how much was dropped


EXPECTED = {
    # seccomp refuses IP sockets; the work dir is a tmpfs of its own; no /etc at all
    "local": Expected(
        ("/sandbox", "/tmp", "/dev/shm"),
        frozenset({"etc", "home", "root", "work"}),
        errno.EAFNOSUPPORT,
        counts_dropped_output=True,
    ),
    # a network namespace with loopback only; the work dir is read-only; Docker writes its own
    # /etc (hosts, resolv.conf); the log driver keeps the last 128 KiB of output
    "docker": Expected(
        ("/tmp", "/dev/shm"),
        frozenset({"home", "root", "work"}),
        errno.ECONNREFUSED,
        counts_dropped_output=False,
    ),
}


def run_code(isolated: HarnessSandbox, code: str, timeout_s: float = 10.0) -> ExecutionResult:
    """Run `code` as the body of the one function a job's one test calls (so a failure is
    reported, not fatal): it runs where the code under test runs."""
    body = "".join(f"    {line}\n" for line in code.splitlines())
    attack = f"def attack():\n{body}    return None\n"
    return isolated.run(
        SandboxJob(code=attack, tests=["assert attack() is None"], timeout_s=timeout_s)
    )


def host_processes() -> dict[int, tuple[int, str, bytes]]:
    """Every process on the host as pid -> (real uid, comm, cmdline), from the host's /proc."""
    found: dict[int, tuple[int, str, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # it exited while we looked
                status = (entry / "status").read_text()
                uid = int(status.split("\nUid:", 1)[1].split()[0])
                found[int(entry.name)] = (
                    uid,
                    (entry / "comm").read_text().strip(),
                    (entry / "cmdline").read_bytes(),
                )
    return found


def leftovers(match: Callable[[int, str, bytes], bool], settle_s: float = 5.0) -> list[int]:
    """Host processes that match (uid, comm, cmdline), once those killed with the run are gone:
    on a loaded host the kernel may take a moment to release a killed container's tasks."""
    deadline = time.monotonic() + settle_s
    while True:
        found = [pid for pid, info in host_processes().items() if match(*info)]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_infinite_loop_is_killed_at_the_deadline(isolated: HarnessSandbox) -> None:
    result = run_code(isolated, "while True:\n    pass", timeout_s=1.5)
    assert result.timed_out
    assert 1.5 <= result.duration_s < 2.5
    assert isolated.run(SandboxJob(code="", tests=["assert True"])).passed


def test_huge_allocation_fails_inside(isolated: HarnessSandbox) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = isolated.run(
        SandboxJob(
            code="",
            tests=[
                "x = bytearray(4 * 1024 ** 3)",
                "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))",
            ],
            memory_mb=256,
        )
    )
    assert [failure.error_type for failure in result.failures] == ["MemoryError", "MemoryError"]
    assert not result.timed_out and result.duration_s < 5
    # The sandbox never got near 4 GB resident: the largest child (which may be an earlier one of
    # this session, e.g. a model server) did not grow past max(its earlier peak, 400 MB).
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert after <= max(before, 400 * 1024)


def test_fork_bomb_is_contained(isolated: HarnessSandbox) -> None:
    marker = f"bomb{secrets.token_hex(5)}"
    code = f"""
import os
print("UID", os.getuid(), flush=True)
def bomb():
    with open("/proc/self/comm", "w") as comm:
        comm.write("{marker}")
    while True:
        try:
            if os.fork() == 0:
                bomb()
        except OSError:
            pass
bomb()
"""
    peak = 0
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_code, isolated, code, 2.0)
        while not running.done():  # watch the bomb from the host while it goes off
            bombs = [pid for pid, (_, comm, _) in host_processes().items() if comm == marker]
            peak = max(peak, len(bombs))
            time.sleep(0.01)
        result = running.result()
    assert 1 < peak <= MAX_TASKS  # it did fork, and the process limit held
    assert result.timed_out and result.duration_s < 5  # 64 busy processes to tear down
    assert not leftovers(lambda _, comm, __: comm == marker)
    if os.geteuid() == 0:  # the run had a uid of its own: nothing may be left running as it
        uid = int(result.stdout.split()[1])
        assert uid != 0
        assert not leftovers(lambda owner, _, __: owner == uid)
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork


def test_disk_fill_stops_at_the_cap(isolated: HarnessSandbox) -> None:
    code = """
import os
chunk = b"x" * (1 << 20)
for folder in ("/sandbox", "/tmp", "/dev/shm", "/", "/usr", "/dev", "/proc"):
    written = 0
    try:
        for index in range(512):  # 512 files of up to 16 MiB: 8 GiB per folder
            with open(f"{folder}/fill{index}", "wb") as out:
                for _ in range(16):
                    out.write(chunk)
                    out.flush()
                    written += len(chunk)
        print("FILLED", folder, written)
    except OSError as exc:
        print("STOPPED", folder, written, exc.errno)
"""
    free_before = shutil.disk_usage("/").free
    result = run_code(isolated, code, timeout_s=20.0)
    assert result.passed, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [
        ["STOPPED", folder]
        for folder in ("/sandbox", "/tmp", "/dev/shm", "/", "/usr", "/dev", "/proc")
    ]
    written = {line[1]: int(line[2]) for line in lines}
    capped = EXPECTED[isolated.name].capped_dirs
    assert {folder for folder, size in written.items() if size} == set(capped)
    assert all(written[folder] <= DISK_BYTES for folder in capped)
    # The attack tried 8 GiB per folder; the host disk did not get it.
    assert free_before - shutil.disk_usage("/").free < 512 * 1024 * 1024


def test_host_files_are_not_visible(isolated: HarnessSandbox, tmp_path: Path) -> None:
    secret = secrets.token_hex(16)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    paths = [
        "/etc/shadow",
        "/etc/passwd",
        "/root/.bashrc",
        "/root/.ssh/id_rsa",
        str(PROJECT_DIR / "pyproject.toml"),
        str(secret_file),
        "/var/log",
        "/home",
    ]
    code = f"""
import os
for path in {paths!r}:
    try:
        if os.path.isdir(path):
            print("READ", path, os.listdir(path))
        else:
            with open(path, "rb") as handle:
                print("READ", path, handle.read()[:200])
    except OSError as exc:
        print("DENIED", path, exc.errno)
print("ROOT", sorted(os.listdir("/")))
"""
    result = run_code(isolated, code)
    assert result.passed, result.stderr
    assert "READ" not in result.stdout
    assert all(f"DENIED {path}" in result.stdout for path in paths)
    assert secret not in result.stdout + result.stderr
    root_line = next(line for line in result.stdout.splitlines() if line.startswith("ROOT"))
    inside = set(ast.literal_eval(root_line.removeprefix("ROOT ")))
    assert "usr" in inside and not inside & EXPECTED[isolated.name].host_only


def test_parent_environment_does_not_leak(
    isolated: HarnessSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("AIMESH_TEST_SECRET", secret)
    code = f"""
import os
print("ENV", dict(os.environ))
pids = {{"self", "1", str(os.getppid()), "{os.getpid()}"}} | {{p for p in os.listdir("/proc") if p.isdigit()}}
for pid in sorted(pids):
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as environ:
            print("ENVIRON", pid, environ.read())
    except OSError as exc:
        print("DENIED", pid, exc.errno)
"""
    result = run_code(isolated, code)
    assert result.passed, result.stderr
    assert "ENV {" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "AIMESH_TEST_SECRET" not in result.stdout + result.stderr


def test_network_to_a_host_listener_fails(isolated: HarnessSandbox) -> None:
    abstract_name = f"\0aimesh-test-{secrets.token_hex(6)}"
    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
    ):
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        unix.bind(abstract_name)
        unix.listen()
        code = f"""
import socket
attempts = [
    (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", {port})),
    (socket.AF_INET6, socket.SOCK_STREAM, ("::1", {port})),
    (socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", {port})),
    (socket.AF_UNIX, socket.SOCK_STREAM, {abstract_name!r}),
]
for family, kind, address in attempts:
    try:
        with socket.socket(family, kind) as sock:
            sock.settimeout(1)
            sock.connect(address)
            sock.sendall(b"hello host")
            print("CONNECTED", int(family), int(kind))
    except OSError as exc:
        print("BLOCKED", int(family), exc.errno)
"""
        result = run_code(isolated, code)
        for listener in (tcp, unix):
            listener.settimeout(0.3)
            with pytest.raises(TimeoutError):
                listener.accept()
        udp.settimeout(0.3)
        with pytest.raises(TimeoutError):
            udp.recv(64)
    assert result.passed, result.stderr
    # Only a datagram may leave a socket, to the sandbox's own loopback (docker): none arrived.
    assert f"CONNECTED {int(socket.AF_INET)} {int(socket.SOCK_STREAM)}" not in result.stdout
    assert f"CONNECTED {int(socket.AF_INET6)}" not in result.stdout
    assert f"CONNECTED {int(socket.AF_UNIX)}" not in result.stdout
    # the IP attempt: refused by seccomp (local) or by nobody listening (docker's own network);
    # the abstract unix socket is in another network namespace (ECONNREFUSED).
    assert f"BLOCKED {int(socket.AF_INET)} {EXPECTED[isolated.name].inet_errno}" in result.stdout
    assert f"BLOCKED {int(socket.AF_UNIX)} {errno.ECONNREFUSED}" in result.stdout


def test_killing_the_parent_hurts_nobody(isolated: HarnessSandbox) -> None:
    with subprocess.Popen(["sleep", "60"]) as bystander:
        code = f"""
import os, signal
for target in (os.getppid(), -1, {bystander.pid}, {os.getpid()}, {os.getppid()}):
    try:
        os.kill(target, signal.SIGKILL)
        print("SENT", target)
    except OSError as exc:
        print("FAILED", target, exc.errno)
"""
        result = run_code(isolated, code)
        assert bystander.poll() is None  # still running
        bystander.kill()
    assert result.passed, result.stderr
    assert f"FAILED {bystander.pid} 3" in result.stdout  # ESRCH: host pids do not exist inside
    assert isolated.run(SandboxJob(code="", tests=["assert True"])).passed


def test_flood_of_stdout_is_capped(isolated: HarnessSandbox) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'x' * (100 * 1024 * 1024))\nsys.stdout.flush()"
    started = time.monotonic()
    result = run_code(isolated, code, timeout_s=20.0)
    assert result.passed
    assert time.monotonic() - started < 10
    assert result.stdout.startswith("x" * 1000)
    assert len(result.stdout) < 70 * 1024
    dropped = 100 * 1024 * 1024 - 64 * 1024 if EXPECTED[isolated.name].counts_dropped_output else ""
    assert f"[... {dropped}" in result.stdout and "more bytes not captured]" in result.stdout


def test_background_processes_die_with_the_run(isolated: HarnessSandbox) -> None:
    marker = f"{secrets.randbelow(10**6) + 10**6}.5"
    code = f"""
import os, subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep({marker})"]
pid = os.fork()
if pid == 0:  # double fork + new session: a classic daemon
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleep)
    os._exit(0)
os.waitpid(pid, 0)
subprocess.Popen(sleep, start_new_session=True)
for _ in range(200):
    running = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{{entry}}/cmdline", "rb") as cmdline:
                running += b"{marker}" in cmdline.read()
        except OSError:
            pass
    if running >= 2:
        break
    time.sleep(0.01)
print("BACKGROUND RUNNING", running)
"""
    result = run_code(isolated, code)
    assert result.passed, result.stderr
    assert "BACKGROUND RUNNING 2" in result.stdout
    assert not leftovers(lambda _, __, cmdline: marker.encode() in cmdline)


def test_escape_hatches_are_closed(isolated: HarnessSandbox) -> None:
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, call):
    result = call()
    print(name, result, ctypes.get_errno() if result == -1 else "")
attempt("unshare-user", lambda: libc.unshare(0x10000000))
attempt("unshare-net", lambda: libc.unshare(0x40000000))
attempt("ptrace", lambda: libc.ptrace(16, 1, 0, 0))  # PTRACE_ATTACH to pid 1
attempt("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
attempt("bpf", lambda: libc.syscall(321, 0, 0, 0))
try:
    os.setuid(0)
    print("setuid", 0)
except OSError as exc:
    print("setuid", -1, exc.errno)
print("uid", os.getuid(), "caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
"""
    result = run_code(isolated, code)
    assert result.passed, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for name in ("unshare-user", "unshare-net", "ptrace", "mount", "bpf", "setuid"):
        assert lines[name].split()[0] == "-1", (name, lines[name])
    assert lines["uid"].split()[0] != "0"
    assert lines["uid"].split()[2] == "0000000000000000"  # no capabilities at all
