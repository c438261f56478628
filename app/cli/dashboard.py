"""`aimesh dashboard`: serve the live dashboard.

The lead's CLI mounts the command function: `app.command("dashboard")(app.cli.dashboard.dashboard)`.
It runs as `aimesh dashboard --port 8050`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console

from app.cli.common import fail
from foundation.settings import Settings
from graph.topics import ALL_TOPICS
from kafka_edges.broker import broker_for, check_reachable, free_port
from kafka_edges.errors import BrokerError

_out = Console()

GRACEFUL_SHUTDOWN_S = 3
"""Open streams get this long to close on Ctrl-C before the server drops them."""


@contextlib.contextmanager
def _broker(settings: Settings, bootstrap: str | None) -> Iterator[str]:
    """The bootstrap to read: the given one, AIMESH_KAFKA_BOOTSTRAP, or an embedded broker."""
    explicit = bootstrap or settings.kafka_bootstrap
    if explicit:
        check_reachable(explicit, settings.kafka_config, timeout_s=5.0)
        yield explicit
        return
    with broker_for(settings, topics=ALL_TOPICS) as info:
        _out.print(
            f"embedded Kafka broker at [bold]{info.bootstrap}[/] (memory only); point the mesh at it "
            f"with AIMESH_KAFKA_BOOTSTRAP={info.bootstrap}",
            highlight=False,
        )
        yield info.bootstrap


def _check_port(host: str, port: int) -> None:
    with socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
    ) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = (
                "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            )
            raise BrokerError(
                f"port {port} on {host} {why}: pick another with --port (0 = any free port)"
            ) from None


def dashboard(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="HTTP port (0 picks a free one)")
    ] = 8050,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers [default: AIMESH_KAFKA_BOOTSTRAP, else an embedded broker]"
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--from-now",
            help="replay the topics' history, or show only events that arrive from now on",
        ),
    ] = True,
) -> None:
    """Serve the live dashboard (telemetry, rewards, reports) until Ctrl-C."""
    try:
        import uvicorn

        from dashboard.app import create_app
    except ImportError as exc:  # fastapi, uvicorn and sse-starlette come with the `server` extra
        raise fail(
            f"the dashboard needs the server extra ({exc.name} is missing): "
            "pip install -e '.[server]'"
        ) from None

    settings = Settings.load()
    try:
        port = port or free_port(host)
        _check_port(host, port)
        with _broker(settings, bootstrap) as servers:
            app = create_app(
                servers,
                kafka_config=settings.kafka_config,
                start_from="earliest" if from_beginning else "latest",
            )
            shown = f"[{host}]" if ":" in host else host
            _out.print(
                f"dashboard on [bold]http://{shown}:{port}/[/] reading Kafka at {servers}",
                highlight=False,
            )
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
            uvicorn.Server(config).run()
    except BrokerError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    typer.run(dashboard)


if __name__ == "__main__":
    main()
