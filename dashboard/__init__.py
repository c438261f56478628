"""The live dashboard: Kafka telemetry and supervisor reports, aggregated and streamed to browsers.

`create_app(bootstrap)` serves it standalone; `include_dashboard(app, "/dashboard")` mounts it in
another FastAPI app (`create_router()` is the bare router).
Importing this package starts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DashboardService", "create_app", "create_router", "include_dashboard"]

if TYPE_CHECKING:
    from dashboard.app import DashboardService, create_app, create_router, include_dashboard


def __getattr__(name: str) -> Any:
    # lazy, so `import dashboard` stays cheap (FastAPI and the Kafka client load on first use)
    if name in __all__:
        from dashboard import app

        return getattr(app, name)
    raise AttributeError(f"module 'dashboard' has no attribute {name!r}")
