"""The in-sandbox runner: exec a solution, evaluate calls (or run whole tests), report on a channel.

Every backend runs this file as a script with a bare Python 3.10+ (stdlib only, no site-packages):

    python -E -s -S harness.py (--result-fd N | --result-file PATH) < job

Trust model: nothing this process says is trusted. It runs the code under test, which can
rewrite this harness, its memory and its channel, and exit at will. So in the normal mode it
decides no verdict: the host sends only the calls of each test (`add(1, 2)`, never the expected
values), and this harness sends back what each call returned, as plain data: builtins checked by
exact type, depth- and size-capped, tagged JSON; anything else (a user class, a subclass of int or
list, an object with a forged __eq__) is reported as an error instead. The host decodes that
data and judges each assert itself (sandbox.judge). The other mode runs whole test snippets here
and reports pass/fail; the host uses it only for tests it cannot split and marks those verdicts
as forgeable (sandbox.protocol).

The job arrives on stdin, marshalled by the host: {"code", "setup", "entry_point"} plus either
"calls": [(test index, (call source, ...), {name: plain value the calls read})] or
"tests": [(test index, test source)]. Events go as JSON lines to the result channel (a pipe
inherited from the host, or a file), one at a time, so a run killed half-way still reports what
it finished; stdout and stderr belong to the user's code.

    {"event": "ready"}                                       the job was read, user code starts
    {"event": "load", "error_type", "message", "traceback"}  code/setup failed, nothing ran
    {"event": "loaded"}                                      code/setup ran, calls/tests start
    {"event": "value", "test", "call", "value"}              a call's value (tagged JSON below)
    {"event": "value", "test", "call", "error_type", "message"}  the call raised, or its value
                                                             is not plain data
    {"event": "test", "index", "passed", "error_type", "message"}   (tests mode)
    {"event": "done"}                                        everything ran

Values: null, true, false, ints and strs are themselves; other types are tagged arrays:
["f", repr] float, ["c", real repr, imag repr] complex, ["b", hex] bytes, ["l", [...]] list,
["t", [...]] tuple, ["s", [...]] set, ["F", [...]] frozenset, ["d", [[key, value], ...]] dict.

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
VALUE_LIMIT = 256 * 1024  # characters of one encoded value
DEPTH_LIMIT = 100  # nesting of one value
CHANNEL_MIN_FD = 64  # keep the channel clear of the low fds user code tends to close or dup2 over
USAGE = "usage: harness.py (--result-fd N | --result-file PATH) < job"
# Bound now, before user code can patch builtins (this keeps honest semantics; it is no defence).
_type, _str, _repr, _len, _enumerate = type, str, repr, len, enumerate
_CONTAINER_TAGS: "dict[type, str]" = {list: "l", tuple: "t", set: "s", frozenset: "F"}
_PLAIN_BASES = (int, float, complex, str, bytes, dict, list, tuple, set, frozenset)


class Channel:
    """The write end of the result channel, moved to a high close-on-exec fd."""

    def __init__(self, fd: int) -> None:
        self._fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_MIN_FD)
        os.close(fd)

    def send(self, event: str, value: "str | None" = None, **fields: "str | int | bool") -> None:
        """Write one event as a single JSON line; `value` is already encoded."""
        items = [("event", _json_value(event))]
        items += [(key, _json_value(field)) for key, field in fields.items()]
        if value is not None:
            items.append(("value", value))
        line = "{" + ",".join(f'"{key}":{text}' for key, text in items) + "}\n"
        view = memoryview(line.encode("ascii"))
        while view:
            view = view[os.write(self._fd, view) :]


def _json_value(value: "str | int | bool") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return encode_basestring_ascii(value)


class NotPlain(Exception):
    """A value that is not sent as plain data; args: (error type, message)."""


class _Encoder:
    """Builds the tagged JSON of one value, refusing anything that is not plain data."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.size += _len(text)
        if self.size > VALUE_LIMIT:
            raise NotPlain("ValueTooLarge", f"returned more than {VALUE_LIMIT} characters of data")
        self.parts.append(text)

    def value(self, value: object, depth: int) -> None:
        kind = _type(value)
        if value is None or kind is bool:
            self.add("null" if value is None else "true" if value else "false")
        elif kind is int:
            try:
                self.add(_str(value))
            except ValueError:  # more digits than int->str allows
                raise NotPlain("ValueTooLarge", "returned an int with too many digits") from None
        elif kind is str:
            self.add(encode_basestring_ascii(value))  # type: ignore[arg-type]
        elif kind is float:
            self.add(f'["f","{_repr(value)}"]')
        elif kind is complex:
            self.add(f'["c","{_repr(value.real)}","{_repr(value.imag)}"]')  # type: ignore[attr-defined]
        elif kind is bytes:
            self.add(f'["b","{value.hex()}"]')  # type: ignore[attr-defined]
        elif kind is dict or kind in _CONTAINER_TAGS:
            if depth >= DEPTH_LIMIT:
                raise NotPlain("ValueTooLarge", f"returned data nested over {DEPTH_LIMIT} deep")
            self._container(value, kind, depth + 1)
        else:
            raise NotPlain("NonPlainValue", _not_plain(kind))

    def _container(self, value: "Any", kind: type, depth: int) -> None:
        if kind is dict:
            self.add('["d",[')
            for index, (key, item) in _enumerate(value.items()):
                self.add(",[" if index else "[")
                self.value(key, depth)
                self.add(",")
                self.value(item, depth)
                self.add("]")
        else:
            self.add(f'["{_CONTAINER_TAGS[kind]}",[')
            for index, item in _enumerate(value):
                if index:
                    self.add(",")
                self.value(item, depth)
        self.add("]]")


def encode(value: object) -> str:
    """`value` as tagged JSON, if it is plain builtin data (exact types) within the caps."""
    encoder = _Encoder()
    encoder.value(value, 0)
    return "".join(encoder.parts)


def _not_plain(kind: type) -> str:
    try:
        name = kind.__qualname__
        base = next((b.__name__ for b in kind.__mro__[1:] if b in _PLAIN_BASES), None)
    except Exception:  # a metaclass that fights back
        name, base = "?", None
    return (
        f"returned a {name}{f' (a subclass of {base})' if base else ''}: "
        "only plain builtin values (exact types) are judged"
    )


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
        [frame for frame in summary.stack if frame.filename != _traceback.__code__.co_filename]
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


def _run_calls(channel: Channel, namespace: "dict[str, Any]", calls: list) -> None:
    """Evaluate each test's calls in one copy of the namespace and send their values."""
    for index, sources, bindings in calls:
        scope = dict(namespace)
        scope.update(bindings)
        for number, source in _enumerate(sources):
            try:
                value = eval(compile(source, f"<test {index}>", "eval"), scope)
                channel.send("value", encode(value), test=index, call=number)
            except NotPlain as refused:
                error_type, message = refused.args
                channel.send("value", test=index, call=number, error_type=error_type,
                             message=f"{source} {message}"[:MESSAGE_LIMIT])  # fmt: skip
            except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
                channel.send("value", test=index, call=number, **_describe(exc))


def _run_tests(channel: Channel, namespace: "dict[str, Any]", tests: list) -> None:
    """Run each snippet in its own copy of the namespace; a failure never stops the others."""
    for index, test in tests:
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
        if "calls" in job:
            _run_calls(channel, namespace, job["calls"])
        else:
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
