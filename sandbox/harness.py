"""The in-sandbox runner: exec a solution, then each test snippet, and report on a private channel.

Every backend runs this file as a script with a bare Python 3.10+ (stdlib only, no site-packages):

    python -E -s -S harness.py (--result-fd N | --result-file PATH) < job

The job arrives on stdin, marshalled by the host: {"code", "setup", "tests", "entry_point"}.
Results never travel on stdout or stderr, which belong to the user's code: they go as JSON
lines to the result channel (a pipe inherited from the host, or a file), one event at a time,
so a run killed half-way still reports the tests it finished. (The channel keeps results
apart from whatever the code prints; it cannot stop code that deliberately writes forged events
to it, since that code runs in this very process.)

    {"event": "ready"}                                       the job was read, user code starts
    {"event": "load", "error_type", "message", "traceback"}  code/setup failed, no test ran
    {"event": "loaded"}                                      code/setup ran, tests start
    {"event": "test", "index", "passed", "error_type", "message"}
    {"event": "done"}                                        every test ran

Start-up time is part of every run, so the harness only imports what it must: marshal rather
than json (which pulls in re and enum), the C string encoder of json for the output, and
traceback only when there is one to format.
"""

import fcntl
import marshal
import os
import sys
from _json import encode_basestring_ascii

TYPE_CHECKING = False  # neither typing nor __future__ is imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

MESSAGE_LIMIT = 1000
TRACEBACK_LIMIT = 4000
CHANNEL_MIN_FD = 64  # keep the channel clear of the low fds user code tends to close or dup2 over
USAGE = "usage: harness.py (--result-fd N | --result-file PATH) < job"


class Channel:
    """The write end of the result channel, moved to a high close-on-exec fd."""

    def __init__(self, fd: int) -> None:
        self._fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_MIN_FD)
        os.close(fd)

    def send(self, event: str, **fields: str | int | bool) -> None:
        """Write one event as a single JSON line."""
        items = [("event", event), *fields.items()]
        line = "{" + ",".join(f'"{key}":{_json_value(value)}' for key, value in items) + "}\n"
        view = memoryview(line.encode("ascii"))
        while view:
            view = view[os.write(self._fd, view) :]


def _json_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return encode_basestring_ascii(value)


def _describe(exc: BaseException) -> dict[str, str]:
    """Error type and a capped message for one exception."""
    try:
        message = str(exc)
    except Exception:  # a user exception whose __str__ itself fails
        message = ""
    return {"error_type": type(exc).__name__, "message": message[:MESSAGE_LIMIT]}


def _traceback(exc: BaseException, sources: dict[str, str]) -> str:
    """The traceback of a load failure, showing the user's lines and none of the harness's."""
    import linecache
    import traceback

    for filename, source in sources.items():
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    summary = traceback.TracebackException.from_exception(exc)
    summary.stack = traceback.StackSummary.from_list(
        [frame for frame in summary.stack if frame.filename != __file__]
    )
    return "".join(summary.format())[-TRACEBACK_LIMIT:]


def _load(job: "dict[str, Any]", sources: dict[str, str]) -> "dict[str, Any]":
    """Exec the code and the setup in a fresh module; bind `candidate` to the entry point."""
    module = type(sys)("solution")  # a fresh module (types.ModuleType, without importing types)
    sys.modules["solution"] = module  # lets dataclasses, pickle and typing resolve the module
    namespace = module.__dict__
    for filename, source in sources.items():
        exec(compile(source, filename, "exec"), namespace)
    entry_point = job.get("entry_point")
    if entry_point:
        if entry_point not in namespace:
            raise NameError(f"entry point {entry_point!r} is not defined by the code")
        namespace["candidate"] = namespace[entry_point]
    return namespace


def _run_tests(channel: Channel, namespace: "dict[str, Any]", tests: list[str]) -> None:
    """Run each snippet in its own copy of the namespace; a failure never stops the others."""
    for index, test in enumerate(tests):
        try:
            exec(compile(test, f"<test {index}>", "exec"), dict(namespace))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are test failures too
            channel.send("test", index=index, passed=False, **_describe(exc))
        else:
            channel.send("test", index=index, passed=True)


def _open_channel(argv: list[str]) -> Channel:
    if len(argv) == 2 and argv[0] == "--result-fd" and argv[1].isdigit():
        return Channel(int(argv[1]))
    if len(argv) == 2 and argv[0] == "--result-file":
        return Channel(os.open(argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    raise SystemExit(USAGE)


def main(argv: list[str]) -> None:
    """Read the job from stdin, run it and report on the channel."""
    channel = _open_channel(argv)
    job: dict[str, Any] = marshal.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code sees an empty stdin, not the job
    os.close(devnull)
    channel.send("ready")

    sources = {"<solution>": job["code"]}
    if job.get("setup"):
        sources["<setup>"] = job["setup"]
    try:
        namespace = _load(job, sources)
    except BaseException as exc:
        channel.send("load", traceback=_traceback(exc, sources), **_describe(exc))
    else:
        channel.send("loaded")
        _run_tests(channel, namespace, job.get("tests", []))
    for stream in (sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105 (contextlib would cost start-up time)
            stream.flush()  # type: ignore[union-attr]
        except Exception:  # the user's code may have closed or replaced it
            pass
    channel.send("done")


if __name__ == "__main__":
    main(sys.argv[1:])
    os._exit(0)  # do not wait for threads or atexit handlers the user's code left behind
