"""Run one sandboxed process: capped output, a private result pipe, a hard wall-clock deadline.

The process starts in its own session, and its exit is watched through a pidfd. When the
deadline passes, its children are SIGKILLed first: under bubblewrap that is the sandbox's pid 1,
whose death takes the whole pid namespace down and lets bwrap reap it and exit (killing bwrap
first would orphan the sandbox to the host's init, which may never reap it). If there were no
children, or the process has not exited after a grace period, it and its process group are
SIGKILLed. Once it has exited, its process group is SIGKILLed in case anything was left behind.
Output beyond the cap is read and discarded, so a flood cannot stall the run.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.base import SandboxError
from sandbox.protocol import CHANNEL_LIMIT, OUTPUT_LIMIT

READ_CHUNK = 64 * 1024
CHILDREN_GRACE_S = 1.0  # after killing its children, how long the process may take to exit
KILL_GRACE_S = 5.0  # how long a SIGKILLed process may take to be reported dead
DRAIN_GRACE_S = 0.5  # how long to keep reading pipes after the process has exited


class _Sink:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.data), 0)
        self.data += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)


@dataclass(frozen=True)
class Captured:
    """What one run left behind."""

    exit_code: int
    stdout: bytes
    stdout_dropped: int
    stderr: bytes
    stderr_dropped: int
    channel: bytes
    timed_out: bool
    duration_s: float


def run_captured(
    build_argv: Callable[[int], Sequence[str]],
    *,
    stdin: int,
    timeout_s: float,
    env: Mapping[str, str],
    cwd: str,
    pass_fds: Sequence[int] = (),
    uid: int | None = None,
) -> Captured:
    """Run `build_argv(result_fd)` until it exits or `timeout_s` passes; collect everything.

    `uid` (root only) runs the process as that user and group, with no supplementary groups.
    Raises OSError when the process cannot be started.
    """
    started = time.monotonic()
    channel_read, channel_write = os.pipe()
    try:
        proc = subprocess.Popen(
            list(build_argv(channel_write)),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(channel_write, *pass_fds),
            start_new_session=True,
            env=dict(env),
            cwd=cwd,
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
        )
    except BaseException:
        os.close(channel_read)
        raise
    finally:
        os.close(channel_write)

    assert proc.stdout is not None and proc.stderr is not None
    sinks = {
        proc.stdout.fileno(): _Sink(OUTPUT_LIMIT),
        proc.stderr.fileno(): _Sink(OUTPUT_LIMIT),
        channel_read: _Sink(CHANNEL_LIMIT),
    }
    with proc, os.fdopen(channel_read, "rb"), selectors.DefaultSelector() as selector:
        pidfd = os.pidfd_open(proc.pid)
        try:
            timed_out, exited_at = _collect(selector, pidfd, proc.pid, sinks, started + timeout_s)
        finally:
            os.close(pidfd)
        exit_code = proc.wait()
    out, err, channel = (sinks[fd] for fd in sinks)
    return Captured(
        exit_code=exit_code,
        stdout=bytes(out.data),
        stdout_dropped=out.dropped,
        stderr=bytes(err.data),
        stderr_dropped=err.dropped,
        channel=bytes(channel.data),
        timed_out=timed_out,
        duration_s=exited_at - started,
    )


def _collect(
    selector: selectors.BaseSelector,
    pidfd: int,
    pid: int,
    sinks: dict[int, _Sink],
    deadline: float,
) -> tuple[bool, float]:
    """Pump the pipes until the process has exited and they are drained; enforce the deadline.

    `pid` leads its own process group. Returns (timed_out, exit time).
    """
    for fd in (*sinks, pidfd):
        selector.register(fd, selectors.EVENT_READ)
    timed_out = killed = False
    exited_at: float | None = None
    while exited_at is None or len(selector.get_map()) > 0:
        now = time.monotonic()
        if now >= deadline:
            if exited_at is not None:
                break  # pipes still held open after the exit (unisolated stragglers): stop
            if not timed_out and _kill_children(pid):
                grace = CHILDREN_GRACE_S
            elif not killed:
                _kill(pidfd, pid)
                killed, grace = True, KILL_GRACE_S
            else:
                raise SandboxError(f"process {pid} survived SIGKILL for {KILL_GRACE_S} s")
            timed_out = True
            deadline = now + grace
        for key, _ in selector.select(deadline - now):
            if key.fd == pidfd:
                exited_at = time.monotonic()
                selector.unregister(pidfd)
                _kill(pidfd, pid)  # anything left in its process group goes too
                deadline = exited_at + DRAIN_GRACE_S
            elif chunk := os.read(key.fd, READ_CHUNK):
                sinks[key.fd].feed(chunk)
            else:
                selector.unregister(key.fd)
    assert exited_at is not None
    return timed_out, exited_at


def _kill_children(pid: int) -> bool:
    """SIGKILL the process's children (unreaped, so their pids cannot have been reused).

    Returns whether there was any.
    """
    children: list[str] = []
    with contextlib.suppress(OSError):  # the process may be exiting right now
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += (task / "children").read_text().split()
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    return bool(children)


def _kill(pidfd: int, pgid: int) -> None:
    """SIGKILL the process (race-free, through its pidfd) and its process group."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
