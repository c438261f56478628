"""The in-sandbox harness: evaluate a solution's calls, or run tests as the test runner; report.

Every backend runs this file as a script with a bare Python 3.10+ (stdlib only, no site-packages):

    python -E -s -S harness.py (--result-fd N | --result-file PATH) [--user UID] < job

Trust model. In the split run (a job with "calls") nothing this process says is trusted: it runs
the code under test, which can rewrite this harness, its memory and its channel, and exit at
will. So it decides no verdict: the host sends only the calls of each test (`add(1, 2)`, never
the expected values), and this harness sends back what each call returned, as plain data:
builtins checked by exact type, depth- and size-capped, tagged JSON; anything else (a user
class, a subclass of int or list, an object with a forged __eq__) is reported as an error
instead. The host decodes that data and judges each assert itself (sandbox.judge).

A job with "tests" (the tests the host cannot split) makes this process the test runner: it
runs the setup and the tests, and its pass/fail events are the verdict, so it never runs the
code under test. It starts this script again as the solution process (`--serve`), which loads
the code and answers each call over a pipe with the same plain data (see the section below).

The job arrives on stdin, marshalled by the host: {"code", "setup", "entry_point"} plus either
"calls": [(test index, (call source, ...), {name: plain value the calls read})] or
"tests": [(test index, test source)]. Events go as JSON lines to the result channel (a pipe
inherited from the host, or a file opened before `--user` takes effect), one at a time, so a run
killed half-way still reports what it finished; stdout and stderr belong to the user's code.

    {"event": "ready"}                                       the job was read, user code starts
    {"event": "load", "error_type", "message", "traceback"}  code/setup failed, nothing ran
    {"event": "loaded"}                                      code/setup ran, calls/tests start
    {"event": "value", "test", "call", "value"}              a call's value (tagged JSON below)
    {"event": "value", "test", "call", "error_type", "message"}  the call raised, or its value
                                                             is not plain data
    {"event": "test", "index", "passed", "error_type", "message"}   (the test runner)
    {"event": "done"}                                        everything ran

Values: null, true, false, ints and strs are themselves; other types are tagged arrays:
["f", repr] float, ["c", real repr, imag repr] complex, ["b", hex] bytes, ["l", [...]] list,
["t", [...]] tuple, ["s", [...]] set, ["F", [...]] frozenset, ["d", [[key, value], ...]] dict.

Start-up time is part of every run, so the split run only imports what it must: marshal rather
than json (which pulls in re and enum), the C string encoder of json for the output, and
traceback only when there is one to format; json and ctypes only in the test runner.
"""

import fcntl
import marshal
import os
import sys
from _json import encode_basestring_ascii

TYPE_CHECKING = False  # neither typing nor __future__ is imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any, NoReturn

MESSAGE_LIMIT = 1000
TRACEBACK_LIMIT = 4000
VALUE_LIMIT = 256 * 1024  # characters of one encoded value
DEPTH_LIMIT = 100  # nesting of one value
CHANNEL_MIN_FD = 64  # keep the channel clear of the low fds user code tends to close or dup2 over
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

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, text: str) -> None:
        self.size += _len(text)
        if self.size > self.limit:
            raise NotPlain("ValueTooLarge", f"returned more than {self.limit} characters of data")
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


def encode(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as tagged JSON, if it is plain builtin data (exact types) within the caps."""
    encoder = _Encoder(limit)
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


def _load_failure(exc: BaseException, sources: dict[str, str]) -> "dict[str, str]":
    """The fields of a "load" event for a failure while exec'ing `sources`."""
    return {"traceback": _traceback(exc, sources), **_describe(exc)}


def _sources(job: "dict[str, Any]") -> dict[str, str]:
    sources = {"<solution>": job["code"]}
    if job.get("setup"):
        sources["<setup>"] = job["setup"]
    return sources


def _split_run(channel: Channel, job: "dict[str, Any]") -> None:
    """The split run: load the code here and send back the values of the job's calls."""
    sources = _sources(job)
    try:
        namespace = _load(job, sources)
    except BaseException as exc:
        channel.send("load", **_load_failure(exc, sources))
    else:
        channel.send("loaded")
        _run_calls(channel, namespace, job["calls"])


# ---------------------------------------------------------------------------------------------
# The test runner (a job with "tests") and the solution process it calls (--serve).
#
# The runner holds the result channel and the test text; it runs the task's setup and each test,
# and never the code under test: every call of a name the code defines goes as a "call" event
# over a pipe to the solution process, which loads the code and sends back a "value" event (the
# same tagged plain data as the split run). The solution process is started with exec, inherits
# no fd of the runner but its stdout, stderr and the two pipes, and the runner is not dumpable,
# so a process of the same uid can neither ptrace it nor open its /proc/PID/fd or /proc/PID/mem.
# Where the harness starts as root (docker, e2b: `--user U`), it opens the channel and reads
# the job, which stay root's, and then becomes U for good, before any code runs. A solution process that dies or sends nonsense fails the test that was
# running, and the runner stops there; one that falls silent is stopped by the host's deadline.

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
REPLY_LIMIT = VALUE_LIMIT + 4 * MESSAGE_LIMIT  # bytes of one event from the solution process
ARGUMENTS_LIMIT = 64 * VALUE_LIMIT  # characters of one call's arguments (the tests' own data)
REQUEST_LIMIT = 2 * ARGUMENTS_LIMIT  # bytes of one request (the job's code, or a call)
NAMES_LIMIT = 10_000  # names the solution process may define
SERVE_FDS = (3, 4, 5)  # requests, replies and the harness script, in the solution process


class CallError(Exception):
    """A call of the code under test that has no value: what it raised, or why it was refused."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class SolutionGone(BaseException):
    """The solution process died or broke the protocol: no further call can be answered."""


class _Lines:
    """The read end of a pipe of JSON lines, moved to a high close-on-exec fd."""

    def __init__(self, fd: int, limit: int) -> None:
        self._fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_MIN_FD)
        os.close(fd)
        self._buffer = b""
        self._limit = limit

    def line(self) -> "bytes | None":
        """The next line (without its newline); None at the end of the stream."""
        while b"\n" not in self._buffer:
            if _len(self._buffer) > self._limit:
                raise ValueError(f"a line longer than {self._limit} bytes")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def decode_event(line: bytes) -> "dict[str, Any]":
    """One JSON-lines event; ValueError if it is not a JSON object (NaN and Infinity refused)."""
    import json

    event = json.loads(line, parse_constant=_reject_constant)
    if type(event) is not dict:
        raise ValueError("not an event")
    return event


_CONTAINERS: "dict[str, type]" = {"l": list, "t": tuple, "s": set, "F": frozenset}


def decode_value(data: "Any", depth: int = 0) -> "Any":
    """A value from its tagged JSON (already json.loads'ed); ValueError if it is not well-formed."""
    if data is None or _type(data) in (bool, int, str):
        return data
    if _type(data) is not list or _len(data) < 2 or depth > DEPTH_LIMIT:
        raise ValueError("not a tagged value")
    tag, *rest = data
    if tag == "f" and _len(rest) == 1 and _type(rest[0]) is str:
        return float(rest[0])
    if tag == "c" and _len(rest) == 2 and all(_type(part) is str for part in rest):
        return complex(float(rest[0]), float(rest[1]))
    if tag == "b" and _len(rest) == 1 and _type(rest[0]) is str:
        return bytes.fromhex(rest[0])
    if _len(rest) != 1 or _type(rest[0]) is not list:
        raise ValueError("not a tagged value")
    items = rest[0]
    if tag in _CONTAINERS:
        return _CONTAINERS[tag](decode_value(item, depth + 1) for item in items)
    if tag == "d" and all(_type(pair) is list and _len(pair) == 2 for pair in items):
        return {decode_value(k, depth + 1): decode_value(v, depth + 1) for k, v in items}
    raise ValueError("not a tagged value")


def _set_dumpable(dumpable: bool) -> None:
    """Set the process's dumpable flag: an undumpable one cannot be ptraced, nor its
    /proc/PID/mem or /proc/PID/fd opened, by a process of its own uid."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable:
        raise OSError(ctypes.get_errno(), f"cannot set the dumpable flag to {dumpable}")


def _become(uid: int) -> None:
    """Switch user and group to `uid` for good, with no supplementary groups (root only)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


class Solution:
    """The solution process, as the test runner sees it: a pid and the two ends of its pipes."""

    def __init__(self, script_fd: int) -> None:
        """Start the solution process on the harness script open at `script_fd` (read-only)."""
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: only its three fds, its own session, then exec
            try:
                os.setsid()
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD, CHANNEL_MIN_FD)
                        for fd in (requests_read, replies_write, script_fd)]  # fmt: skip
                for fd, target in zip(high, SERVE_FDS, strict=True):
                    os.dup2(fd, target)
                os.closerange(SERVE_FDS[-1] + 1, os.sysconf("SC_OPEN_MAX"))
                interpreter = sys.executable
                os.execv(interpreter, [interpreter, "-E", "-s", "-S", "-B",
                                       f"/proc/self/fd/{SERVE_FDS[2]}", "--serve"])  # fmt: skip
            finally:
                os._exit(127)
        for fd in (requests_read, replies_write, script_fd):
            os.close(fd)
        self.requests = Channel(requests_write)
        self.replies = _Lines(replies_read, REPLY_LIMIT)
        self.calls = 0
        self.gone: dict[str, str] | None = None
        self.ended: str | None = None

    def receive(self) -> "dict[str, Any]":
        """The next event from the solution process; SolutionGone if there is none to be had."""
        try:
            line = self.replies.line()
            if line is not None:
                return decode_event(line)
        except (ValueError, RecursionError) as exc:
            self.end("ProtocolError", f"the solution process sent nonsense: {exc}")
        self.end("Crashed", f"the solution process ended ({self.stop()})")

    def end(self, error_type: str, message: str) -> "NoReturn":
        """Give up on the solution process: no call is answered any more."""
        self.gone = {"error_type": error_type, "message": message[:MESSAGE_LIMIT]}
        self.stop()
        raise SolutionGone()

    def call(self, name: str, args: tuple, kwargs: "dict[str, Any]") -> "Any":
        """Call `name` in the solution process and return its value, or raise what stands for it."""
        if self.gone is not None:
            raise SolutionGone()
        try:
            arguments = encode((args, kwargs), ARGUMENTS_LIMIT)
        except NotPlain as refused:
            raise CallError("NonPlainArgument", f"{name}(...): an argument is not plain data "
                            f"({refused.args[1]})") from None  # fmt: skip
        number, self.calls = self.calls, self.calls + 1
        try:
            self.requests.send("call", arguments, id=number, name=name)
        except OSError:
            self.end("Crashed", f"the solution process stopped reading ({self.stop()})")
        reply = self.receive()
        if reply.get("event") != "value" or reply.get("id") != number:
            self.end("ProtocolError", "the solution process answered out of turn")
        if "value" not in reply:
            raise _raised(_type_name(reply), _str(reply.get("message", ""))[:MESSAGE_LIMIT])
        try:
            return decode_value(reply["value"])
        except (ValueError, TypeError, RecursionError):  # TypeError: an unhashable key
            raise CallError(
                "MalformedValue", "the solution process sent a malformed value"
            ) from None

    def stop(self) -> str:
        """Kill the solution process and its session (once); how it ended."""
        if self.ended is None:
            try:  # noqa: SIM105 (contextlib would cost start-up time)
                os.killpg(self.pid, 9)
            except OSError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.ended = (
                f"killed by signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exit code {os.WEXITSTATUS(status)}"
            )
        return self.ended


# What a call's exception may be raised as in the tests, so that `except ValueError` works. Not
# StopIteration and the like: `all(map(f, xs))` would take one for the end of the values.
RAISED_AS = frozenset({
    "ValueError", "TypeError", "KeyError", "IndexError", "LookupError", "ZeroDivisionError",
    "ArithmeticError", "OverflowError", "NotImplementedError", "RuntimeError", "AssertionError",
})  # fmt: skip


def _raised(error_type: str, message: str) -> CallError:
    """The exception that stands for a call's in the tests."""
    if error_type in RAISED_AS:
        import builtins

        base = getattr(builtins, error_type)
        raised: CallError = type(error_type, (CallError, base), {})(error_type, message)
        return raised
    return CallError(error_type, message)


def _type_name(event: "dict[str, Any]") -> str:
    name = event.get("error_type")
    return name[:100] if _type(name) is str and name else "Error"


class Remote:
    """A name the code under test defines, as the tests see it: calling it calls the solution."""

    def __init__(self, solution: Solution, name: str) -> None:
        self._solution = solution
        self.__name__ = name

    def __call__(self, *args: "Any", **kwargs: "Any") -> "Any":
        return self._solution.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self.__name__} in the solution process>"


def _runner(channel: Channel, job: "dict[str, Any]", script_fd: int) -> None:
    """The test runner: set-up and tests here, every call of the code in the solution process."""
    try:
        _set_dumpable(False)
        solution = Solution(script_fd)
    except OSError as exc:
        channel.send("load", error_type="RunnerUnprotected", message=_str(exc)[:MESSAGE_LIMIT])
        return
    try:
        namespace = _runner_namespace(channel, solution, job)
        if namespace is not None:
            channel.send("loaded")
            _run_tests(channel, solution, namespace, job["tests"])
    except SolutionGone:
        channel.send("load", **(solution.gone or {}))
    finally:
        solution.stop()


def _runner_namespace(
    channel: Channel, solution: Solution, job: "dict[str, Any]"
) -> "dict[str, Any] | None":
    """The tests' namespace: a Remote for each name the code defines, then the setup run here.

    None, after a "load" event, when the code or the setup failed to load.
    """
    import json

    solution.requests.send("job", json.dumps({k: job[k] for k in ("code", "setup", "entry_point")}))
    loaded = solution.receive()
    if loaded.get("event") != "loaded":
        channel.send("load", error_type=_type_name(loaded),
                     message=_str(loaded.get("message", ""))[:MESSAGE_LIMIT],
                     traceback=_str(loaded.get("traceback", ""))[:TRACEBACK_LIMIT])  # fmt: skip
        return None
    try:
        names, modules = decode_value(loaded.get("value"))
    except (ValueError, TypeError, RecursionError):
        names = modules = None
    if _type(names) is not list or _type(modules) is not dict or _len(names) > NAMES_LIMIT:
        solution.end("ProtocolError", "the solution process sent no list of its names")
    namespace = type(sys)("tests").__dict__
    for name, module_name in modules.items():
        if _type(name) is str and _type(module_name) is str:
            _import_here(namespace, name, module_name)
    for name in names:
        if _type(name) is str and name.isidentifier():
            namespace[name] = Remote(solution, name)
    setup = job.get("setup")
    if setup:
        try:
            exec(compile(setup, "<setup>", "exec"), namespace)
        except SolutionGone:
            raise
        except BaseException as exc:
            channel.send("load", **_load_failure(exc, {"<setup>": setup}))
            return None
    return namespace


NOT_IMPORTED = frozenset({"antigravity", "this"})  # standard modules that act when imported


def _import_here(namespace: "dict[str, Any]", name: str, module_name: str) -> None:
    """Bind `name` to the standard module the code bound it to (the tests may use the code's
    imports); the runner imports it itself, and nothing but the standard library."""
    if module_name.partition(".")[0] not in sys.stdlib_module_names or module_name in NOT_IMPORTED:
        return
    try:
        __import__(module_name)
        namespace[name] = sys.modules[module_name]
    except Exception:  # a module this interpreter lacks: the tests do without it
        pass


def _run_tests(
    channel: Channel, solution: Solution, namespace: "dict[str, Any]", tests: list
) -> None:
    """Run each test in its own copy of the namespace; stop when the solution process is gone."""
    for index, test in tests:
        failure: dict[str, str] | None = None
        try:
            exec(compile(test, f"<test {index}>", "exec"), dict(namespace))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are test failures too
            failure = _describe(exc)
            if isinstance(exc, CallError):
                failure["error_type"] = exc.error_type
        if solution.gone is not None:  # whatever the test made of it (it may catch anything)
            channel.send("test", index=index, passed=False, **solution.gone)
            return
        if failure is None:
            channel.send("test", index=index, passed=True)
        else:
            channel.send("test", index=index, passed=False, **failure)


def _serve() -> None:
    """The solution process: load the code, then answer the runner's calls until it hangs up."""
    requests = _Lines(SERVE_FDS[0], REQUEST_LIMIT)
    replies = Channel(SERVE_FDS[1])
    os.close(SERVE_FDS[2])
    line = requests.line()
    if line is None:
        return
    job = decode_event(line)["value"]
    sources = _sources(job)
    try:
        namespace = _load(job, sources)
    except BaseException as exc:
        _flush()
        replies.send("load", **_load_failure(exc, sources))
        return
    _flush()
    names = [name for name, value in namespace.items()
             if not name.startswith("__") and callable(value)][:NAMES_LIMIT]  # fmt: skip
    modules = {name: value.__name__ for name, value in namespace.items()
               if _type(value) is _type(sys) and not name.startswith("__")}  # fmt: skip
    replies.send("loaded", encode((names, modules)))
    while (line := requests.line()) is not None:
        request = decode_event(line)
        number, name = request["id"], request["name"]
        try:
            args, kwargs = decode_value(request["value"])
            value = namespace[name](*args, **kwargs)
            replies.send("value", encode(value), id=number)
        except NotPlain as refused:
            error_type, message = refused.args
            replies.send("value", id=number, error_type=error_type,
                         message=f"{name}(...) {message}"[:MESSAGE_LIMIT])  # fmt: skip
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
            replies.send("value", id=number, **_describe(exc))
        _flush()  # the runner kills this process when it is done: nothing may wait in a buffer


def _flush() -> None:
    """Flush what the code printed."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105 (contextlib would cost start-up time)
            stream.flush()  # type: ignore[union-attr]
        except Exception:  # the user's code may have closed or replaced it
            pass


USAGE = (
    "usage: harness.py (--result-fd N | --result-file PATH) [--user UID] < job\n"
    "       harness.py --serve"
)


def _options(argv: list[str]) -> "tuple[Channel, int | None]":
    """The result channel, and the uid to become once it is open and the job read."""
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if _len(argv) % 2 or not options.keys() <= {"--result-fd", "--result-file", "--user"}:
        raise SystemExit(USAGE)
    user = int(options["--user"]) if "--user" in options else None
    if "--result-fd" in options and "--result-file" not in options:
        return Channel(int(options["--result-fd"])), user
    if "--result-file" in options and "--result-fd" not in options:
        path = options["--result-file"]
        return Channel(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)), user
    raise SystemExit(USAGE)


def main(argv: list[str]) -> None:
    """Read the job from stdin, run it and report on the channel (or serve the test runner)."""
    if argv == ["--serve"]:
        _serve()
        return
    channel, user = _options(argv)
    job: dict[str, Any] = marshal.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code sees an empty stdin, not the job
    os.close(devnull)
    if "calls" not in job:  # the test runner: its solution process runs this script
        script_fd = os.open(sys.argv[0], os.O_RDONLY | os.O_CLOEXEC)
    if user is not None:
        _become(user)
        if "calls" in job:  # the code runs here: as in any other process of its own (no secret)
            _set_dumpable(True)  # a change of uid cleared the flag
    channel.send("ready")
    if "calls" in job:
        _split_run(channel, job)
    else:
        _runner(channel, job, script_fd)
    _flush()
    channel.send("done")


if __name__ == "__main__":
    main(sys.argv[1:])
    os._exit(0)  # do not wait for threads or atexit handlers the user's code left behind
