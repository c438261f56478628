"""Hostile code against the real LocalSandbox: each attack must be contained and the host fine."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox import ExecutionResult, SandboxJob
from sandbox.local import DISK_BYTES, MAX_TASKS, LocalSandbox

PROJECT_DIR = Path(__file__).resolve().parents[2]


def run_code(local: LocalSandbox, code: str, timeout_s: float = 10.0) -> ExecutionResult:
    """Run `code` as the single test of a job (so a failure is reported, not fatal)."""
    return local.run(SandboxJob(code="", tests=[code], timeout_s=timeout_s))


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


def test_infinite_loop_is_killed_at_the_deadline(local: LocalSandbox) -> None:
    result = run_code(local, "while True:\n    pass", timeout_s=1.5)
    assert result.timed_out
    assert 1.5 <= result.duration_s < 2.5
    assert local.run(SandboxJob(code="", tests=["assert True"])).passed


def test_huge_allocation_fails_inside(local: LocalSandbox) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = local.run(
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


def test_fork_bomb_is_contained(local: LocalSandbox) -> None:
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
        running = pool.submit(run_code, local, code, 2.0)
        while not running.done():  # watch the bomb from the host while it goes off
            bombs = [pid for pid, (_, comm, _) in host_processes().items() if comm == marker]
            peak = max(peak, len(bombs))
            time.sleep(0.01)
        result = running.result()
    assert 1 < peak <= MAX_TASKS  # it did fork, and the process limit held
    assert result.timed_out and result.duration_s < 5  # 64 busy processes to tear down
    assert not [pid for pid, (_, comm, _) in host_processes().items() if comm == marker]
    if os.geteuid() == 0:  # the run had a uid of its own: nothing may be left running as it
        uid = int(result.stdout.split()[1])
        assert uid != 0
        assert not [pid for pid, (owner, _, _) in host_processes().items() if owner == uid]
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork


def test_disk_fill_stops_at_the_cap(local: LocalSandbox) -> None:
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
    result = run_code(local, code, timeout_s=20.0)
    assert result.passed, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [
        ["STOPPED", folder]
        for folder in ("/sandbox", "/tmp", "/dev/shm", "/", "/usr", "/dev", "/proc")
    ]
    written = {line[1]: int(line[2]) for line in lines}
    for folder in ("/sandbox", "/tmp", "/dev/shm"):
        assert 0 < written[folder] <= DISK_BYTES
    assert written["/"] == written["/usr"] == written["/dev"] == written["/proc"] == 0
    # The attack tried 8 GiB per folder; the host disk did not get it.
    assert free_before - shutil.disk_usage("/").free < 512 * 1024 * 1024


def test_host_files_are_not_visible(local: LocalSandbox, tmp_path: Path) -> None:
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
    result = run_code(local, code)
    assert result.passed, result.stderr
    assert "READ" not in result.stdout
    assert all(f"DENIED {path}" in result.stdout for path in paths)
    assert secret not in result.stdout + result.stderr
    root_line = next(line for line in result.stdout.splitlines() if line.startswith("ROOT"))
    assert "'etc'" not in root_line and "'home'" not in root_line and "'work'" not in root_line


def test_parent_environment_does_not_leak(
    local: LocalSandbox, monkeypatch: pytest.MonkeyPatch
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
    result = run_code(local, code)
    assert result.passed, result.stderr
    assert "ENV {" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "AIMESH_TEST_SECRET" not in result.stdout + result.stderr


def test_network_to_a_host_listener_fails(local: LocalSandbox) -> None:
    abstract_name = f"\0aimesh-test-{secrets.token_hex(6)}"
    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
    ):
        unix.bind(abstract_name)
        unix.listen()
        port = tcp.getsockname()[1]
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
            print("CONNECTED", family)
    except OSError as exc:
        print("BLOCKED", int(family), exc.errno)
"""
        result = run_code(local, code)
        for listener in (tcp, unix):
            listener.settimeout(0.3)
            with pytest.raises(TimeoutError):
                listener.accept()
    assert result.passed, result.stderr
    assert "CONNECTED" not in result.stdout
    inet = int(socket.AF_INET)
    # seccomp refuses IP sockets outright (EAFNOSUPPORT); the abstract unix socket is in
    # another network namespace (ECONNREFUSED).
    assert f"BLOCKED {inet} 97" in result.stdout
    assert f"BLOCKED {int(socket.AF_UNIX)} 111" in result.stdout


def test_killing_the_parent_hurts_nobody(local: LocalSandbox) -> None:
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
        result = run_code(local, code)
        assert bystander.poll() is None  # still running
        bystander.kill()
    assert result.passed, result.stderr
    assert f"FAILED {bystander.pid} 3" in result.stdout  # ESRCH: host pids do not exist inside
    assert local.run(SandboxJob(code="", tests=["assert True"])).passed


def test_flood_of_stdout_is_capped(local: LocalSandbox) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'x' * (100 * 1024 * 1024))\nsys.stdout.flush()"
    started = time.monotonic()
    result = run_code(local, code, timeout_s=20.0)
    assert result.passed
    assert time.monotonic() - started < 10
    assert result.stdout.startswith("x" * 1000)
    assert len(result.stdout) < 70 * 1024
    assert f"[... {100 * 1024 * 1024 - 64 * 1024} more bytes not captured]" in result.stdout


def test_background_processes_die_with_the_run(local: LocalSandbox) -> None:
    marker = f"{secrets.randbelow(10**6) + 10**6}.5"
    code = f"""
import os, subprocess, time
pid = os.fork()
if pid == 0:  # double fork + new session: a classic daemon
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
os.waitpid(pid, 0)
subprocess.Popen(["/usr/bin/sleep", "{marker}"], start_new_session=True)
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
    result = run_code(local, code)
    assert result.passed, result.stderr
    assert "BACKGROUND RUNNING 2" in result.stdout
    leftovers = [
        pid for pid, (_, _, cmdline) in host_processes().items() if marker.encode() in cmdline
    ]
    assert leftovers == []


def test_escape_hatches_are_closed(local: LocalSandbox) -> None:
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
    result = run_code(local, code)
    assert result.passed, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for name in ("unshare-user", "unshare-net", "ptrace", "mount", "bpf", "setuid"):
        assert lines[name].split()[0] == "-1", (name, lines[name])
    assert lines["uid"].split()[0] != "0"
    assert lines["uid"].split()[2] == "0000000000000000"  # no capabilities at all
