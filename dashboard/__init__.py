"""The live dashboard: Kafka telemetry and supervisor reports, aggregated and streamed to browsers.

`create_app(bootstrap)` serves it standalone; `create_router()` mounts it in another FastAPI app.
Importing this package starts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DashboardService", "create_app", "create_router"]

if TYPE_CHECKING:
    from dashboard.app import DashboardService, create_app, create_router


def __getattr__(name: str) -> Any:
    # lazy, so `import dashboard` stays cheap (FastAPI and the Kafka client load on first use)
    if name in __all__:
        from dashboard import app

        return getattr(app, name)
    raise AttributeError(f"module 'dashboard' has no attribute {name!r}")
