"""A server run as a Python child process that dies with its parent: the base of our local servers."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

# Run as `python -c _LAUNCHER <parent pid> (-m MODULE | -c CODE | -x PROGRAM) ARGS...`: a daemon
# thread that ends this process (SIGTERM, then SIGKILL) once its parent is gone, even if the
# parent was SIGKILLed; then the server itself, as `python -m MODULE ARGS` or `python -c CODE
# ARGS` would, or a native PROGRAM as this process's child, killed when this process ends.
# (Not prctl PDEATHSIG: that fires when the spawning *thread* exits.)
_LAUNCHER = """\
import os, runpy, signal, sys, threading, time
def watch(parent):
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5.0)
    os.kill(os.getpid(), signal.SIGKILL)
parent, how, what, *args = sys.argv[1:]
threading.Thread(target=watch, args=(int(parent),), daemon=True).start()
if how == "-m":
    sys.argv = [what, *args]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
elif how == "-x":
    import ctypes, subprocess
    libc = ctypes.CDLL(None, use_errno=True)
    die_with_us = lambda: libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with us
    child = subprocess.Popen([what, *args], preexec_fn=die_with_us)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    sys.exit(child.wait())
else:
    sys.argv = ["-c", *args]
    exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
"""


class ChildServer:
    """A server as a child process; a context manager (start/stop).

    Subclasses set `error` and `name` (for messages) and implement `_prepare`, `_command` and
    `_is_ready` (and `_env` for extra environment variables).
    """

    error: ClassVar[type[Exception]] = RuntimeError
    name: ClassVar[str] = "the server"
    poll_s: ClassVar[float] = 0.05

    def __init__(self, *, ready_timeout_s: float) -> None:
        self.ready_timeout_s = ready_timeout_s
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _prepare(self) -> Path:
        """Check the preconditions (raising `error`), pick the port; return the log file's path."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        """The Python arguments: ``["-m", MODULE, *args]`` or ``["-c", CODE, *args]``, or a
        native program: ``["-x", PATH, *args]``."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        """Environment variables to set for the server."""
        return {}

    def _is_ready(self) -> bool:
        """Does the server answer?"""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> Self:
        """Start the server and wait until it is ready; raise `error` if it cannot."""
        if self._proc is not None:
            return self
        self.log_path = self._prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self._command()]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._env()},
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            )
            atexit.register(self.stop)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise self.error(
                    f"{self.name} exited with code {code} while starting; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                raise self.error(
                    f"{self.name} is not ready after {self.ready_timeout_s:.0f} s; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            time.sleep(self.poll_s)

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            raise self.error(f"{self.name} is not started")
        return self._proc.wait()

    def stop(self) -> None:
        """Stop the server: terminate, wait, then kill. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
