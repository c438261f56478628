"""The live dashboard: a FastAPI router (page, JSON snapshot, SSE stream) over rolling aggregates.

Two ways to serve it:

- standalone: `create_app(bootstrap)` (what `aimesh dashboard` runs);
- inside another FastAPI app (the LangGraph server's http app):
  `include_dashboard(app, "/dashboard")`: the router under the prefix, and the prefix without
  its trailing slash redirected to it. FastAPI runs the router's lifespan (which starts and
  stops the Kafka reader) as part of the app's own lifespan. An app that composes lifespans by
  hand can use `DashboardService.lifespan` instead.

Nothing runs or connects at import time; each router owns its own DashboardService.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from sse_starlette.sse import EventSourceResponse

from dashboard.aggregates import Aggregator
from dashboard.consumer import StartFrom, TelemetryReader
from dashboard.learning import RegistryReader
from foundation.settings import Settings
from kafka_edges.config import topic_prefix as settings_topic_prefix

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STREAM_TICK_S = 0.25
"""How often a stream checks for new data (the page's update latency)."""
STREAM_REFRESH_S = 5.0
"""A stream resends the snapshot at least this often (tasks/min decays without new events)."""
STREAM_PING_S = 15
"""Keep-alive comment period on idle streams (proxies close silent connections)."""
RECONNECT_MS = 2000
"""How long a browser waits before reconnecting a dropped stream."""


class DashboardService:
    """The Kafka reader and the aggregates behind one dashboard.

    With `bootstrap=None` the broker is taken from Settings (AIMESH_KAFKA_BOOTSTRAP) when the
    service starts; if none is configured the page says so instead of failing.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        kafka_config: Mapping[str, Any] | None = None,
        topic_prefix: str | None = None,
        start_from: StartFrom = "earliest",
        aggregator: Aggregator | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.kafka_config = dict(kafka_config) if kafka_config is not None else None
        self.topic_prefix = topic_prefix
        self.start_from: StartFrom = start_from
        self.aggregator = aggregator or Aggregator()
        self._reader: TelemetryReader | None = None

    @property
    def running(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def start(self) -> None:
        """Start the background reader (idempotent)."""
        if self.running:
            return
        bootstrap, kafka_config, prefix = self.bootstrap, self.kafka_config, self.topic_prefix
        if bootstrap is None or kafka_config is None or prefix is None:
            settings = Settings.load()  # the launcher's settings when it handed them over
            bootstrap = bootstrap or settings.kafka_bootstrap
            kafka_config = kafka_config if kafka_config is not None else settings.kafka_config
            prefix = prefix if prefix is not None else settings_topic_prefix(settings)
        if not bootstrap:
            self.aggregator.set_source(
                "not_configured",
                "no Kafka bootstrap servers: set AIMESH_KAFKA_BOOTSTRAP",
                bootstrap=None,
            )
            return
        self.aggregator.set_source("connecting", f"connecting to {bootstrap}", bootstrap=bootstrap)
        self._reader = TelemetryReader(
            bootstrap,
            self.aggregator,
            kafka_config=kafka_config,
            topic_prefix=prefix,
            start_from=self.start_from,
        )
        self._reader.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the reader and wait up to `timeout_s` for it (it is a daemon thread either way)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop(timeout_s)
            if reader.is_alive():
                log.warning("dashboard: the Kafka reader did not stop within %.0f s", timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start the reader for the life of an ASGI app (usable as, or inside, a FastAPI lifespan)."""
        self.start()
        try:
            yield
        finally:
            await asyncio.to_thread(self.stop)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


_SAFE_STATIC = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


def _static_file(path: str) -> Path:
    if not _SAFE_STATIC.match(path) or ".." in path.split("/"):
        raise HTTPException(status_code=404)
    file = (STATIC_DIR / path).resolve()
    if not file.is_file() or STATIC_DIR not in file.parents:
        raise HTTPException(status_code=404)
    return file


class DashboardRouter(APIRouter):
    """An APIRouter that knows its DashboardService (`router.service`); its lifespan runs the
    service's reader and closes the learning registry it reads from."""

    def __init__(self, service: DashboardService, learning: RegistryReader) -> None:
        super().__init__(lifespan=self._lifespan)
        self.service = service
        self.learning = learning

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any = None) -> AsyncIterator[None]:
        try:
            async with self.service.lifespan(app):
                yield
        finally:
            await asyncio.to_thread(self.learning.close)


def create_router(
    bootstrap: str | None = None,
    *,
    service: DashboardService | None = None,
    kafka_config: Mapping[str, Any] | None = None,
    topic_prefix: str | None = None,
    start_from: StartFrom = "earliest",
    learning_settings: Settings | None = None,
) -> DashboardRouter:
    """The dashboard's routes, with a lifespan that runs its Kafka reader.

    Routes (relative to where the router is included): `/` the page, `/api/snapshot` the
    aggregates as JSON, `/api/stream` the same as server-sent events (`event: snapshot`),
    `/api/task?task_id=...[&run_id=...]` a reported task's detail (its attempts, code, verdicts,
    review and report), `/api/learning` the learning rounds and adapters from the prompt registry
    of `learning_settings` (default: the environment's), `/static/...` the page's assets,
    `/api/health` the reader's status.
    `router.service` is the DashboardService (pass your own `service` to share or inspect it).
    """
    service = service or DashboardService(
        bootstrap, kafka_config=kafka_config, topic_prefix=topic_prefix, start_from=start_from
    )
    router = DashboardRouter(service, RegistryReader(learning_settings or Settings()))
    index_template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        # a <base> at the router's own path keeps every asset and API URL relative, wherever it is mounted
        path = request.url.path
        base = path if path.endswith("/") else path + "/"
        html = index_template.replace("<!--BASE-->", f'<base href="{_html_attr(base)}">', 1)
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @router.get("/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> FileResponse:
        return FileResponse(_static_file(path), headers={"Cache-Control": "no-cache"})

    @router.get("/api/snapshot", summary="Dashboard aggregates (JSON)")
    async def snapshot() -> Response:
        return Response(_dumps(service.aggregator.snapshot()), media_type="application/json")

    @router.get("/api/stream", summary="Dashboard aggregates as server-sent events")
    async def stream() -> EventSourceResponse:
        # set by sse-starlette when the server shuts down: the stream then ends cleanly
        shutdown = anyio.Event()
        return EventSourceResponse(
            _snapshots(service.aggregator.snapshot, shutdown),
            ping=STREAM_PING_S,
            shutdown_event=shutdown,
            shutdown_grace_period=2 * STREAM_TICK_S + 0.5,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/api/task", summary="A reported task's attempts, code, verdicts, review, report")
    async def task(task_id: str, run_id: str | None = None) -> Response:
        detail = service.aggregator.task_detail(task_id, run_id)
        if detail is None:
            raise HTTPException(404, f"no report of task {task_id!r} (yet, or any more)")
        return Response(_dumps(detail), media_type="application/json")

    @router.get("/api/learning", summary="Learning rounds and adapters, from the prompt registry")
    async def learning() -> Response:
        view = await anyio.to_thread.run_sync(router.learning.view)
        return Response(_dumps(view), media_type="application/json")

    @router.get("/api/health", summary="Dashboard reader status")
    async def health() -> JSONResponse:
        return JSONResponse({"running": service.running, **service.aggregator.snapshot()["source"]})

    return router


async def _snapshots(
    snapshot: Callable[[], dict[str, Any]], shutdown: anyio.Event | None = None
) -> AsyncIterator[dict[str, Any]]:
    """A snapshot at once, then whenever the aggregates change (at most every STREAM_TICK_S),
    until `shutdown` is set (the client's disconnect cancels it)."""
    sent_version: int | None = None
    loop = asyncio.get_running_loop()
    sent_at = 0.0
    while shutdown is None or not shutdown.is_set():
        snap = snapshot()
        now = loop.time()
        if snap["version"] != sent_version or now - sent_at >= STREAM_REFRESH_S:
            sent_version, sent_at = snap["version"], now
            yield {
                "event": "snapshot",
                "id": str(snap["version"]),
                "data": _dumps(snap),
                "retry": RECONNECT_MS,
            }
        await asyncio.sleep(STREAM_TICK_S)


def include_dashboard(app: FastAPI, prefix: str, router: DashboardRouter | None = None) -> None:
    """Serve the dashboard under `prefix` (e.g. "/dashboard") in `app`; `prefix` itself, without
    the trailing slash, redirects to the page (hosts like the LangGraph server do not add the
    slash themselves)."""
    if not prefix.strip("/"):
        raise ValueError("include_dashboard needs a path prefix such as '/dashboard'")
    page = prefix.rstrip("/") + "/"

    async def to_page() -> RedirectResponse:
        return RedirectResponse(page, status_code=308)

    app.include_router(router or create_router(), prefix=prefix.rstrip("/"))
    app.add_api_route(page.rstrip("/"), to_page, methods=["GET"], include_in_schema=False)


def _html_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def create_app(
    bootstrap: str,
    *,
    kafka_config: Mapping[str, Any] | None = None,
    topic_prefix: str | None = None,
    start_from: StartFrom = "earliest",
) -> FastAPI:
    """A standalone dashboard app reading from `bootstrap` (page at `/`)."""
    router = create_router(
        bootstrap, kafka_config=kafka_config, topic_prefix=topic_prefix, start_from=start_from
    )
    app = FastAPI(
        title="AI-Mesh dashboard",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.include_router(router)
    app.state.dashboard_service = router.service
    return app
