"""The dashboard's HTTP surface, mounted inside another FastAPI app (no broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dashboard.aggregates import Aggregator
from dashboard.app import DashboardService, _snapshots, create_router, include_dashboard
from dashboard.learning import RegistryReader
from foundation.settings import Settings
from kafka_edges.codec import encode
from nodes.prompts import CONSUMER_ADAPTER, SEED_PROMPTS
from prompt_registry import PromptRegistry


def test_router_mounts_under_a_prefix_with_its_lifespan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMESH_KAFKA_BOOTSTRAP", raising=False)
    host_events: list[str] = []

    @asynccontextmanager
    async def host_lifespan(app: FastAPI) -> AsyncIterator[None]:
        host_events.append("start")
        yield
        host_events.append("stop")

    service = DashboardService()
    app = FastAPI(lifespan=host_lifespan)
    app.include_router(create_router(service=service), prefix="/dashboard")
    # nothing runs when the router is built
    assert service.aggregator.snapshot()["source"]["state"] == "starting"

    with TestClient(app) as client:
        page = client.get("/dashboard/")
        assert page.status_code == 200
        assert '<base href="/dashboard/">' in page.text
        assert 'src="static/vendor/chart.umd.min.js"' in page.text
        assert client.get("/dashboard", follow_redirects=False).status_code in (307, 308)
        assert client.get("/dashboard/static/dashboard.js").status_code == 200
        vendor = client.get("/dashboard/static/vendor/chart.umd.min.js")
        assert vendor.status_code == 200
        assert "Chart" in vendor.text[:2000]
        for bad in ("../app.py", "..%2Fapp.py", "vendor/../../app.py", "nope.js"):
            assert client.get(f"/dashboard/static/{bad}").status_code == 404, bad
        snap = client.get("/dashboard/api/snapshot").json()
        # the lifespan ran, and says why the reader is idle
        assert snap["source"]["state"] == "not_configured"
        assert "AIMESH_KAFKA_BOOTSTRAP" in snap["source"]["detail"]
        assert snap["totals"]["events"] == 0
        assert client.get("/dashboard/api/health").json()["running"] is False
        assert host_events == ["start"]
    assert host_events == ["start", "stop"]


def test_stream_sends_a_snapshot_at_once_then_on_change() -> None:
    aggregator = Aggregator()

    async def scenario() -> list[dict]:
        stream = _snapshots(aggregator.snapshot)
        first = await asyncio.wait_for(anext(stream), 2)
        aggregator.ingest(
            "ai_telemetry",
            b'{"agent": "consumer", "timestamp": "2025-06-01T12:00:00Z", "latency_ms": 5, "tokens_used": 1, "reward_score": null, "memory_hits": 0}',
        )
        second = await asyncio.wait_for(anext(stream), 2)
        await stream.aclose()
        return [first, second]

    first, second = asyncio.run(scenario())
    assert first["event"] == second["event"] == "snapshot"
    assert int(second["id"]) > int(first["id"])
    assert json.loads(first["data"])["totals"]["events"] == 0
    assert json.loads(second["data"])["totals"]["events"] == 1


def test_include_dashboard_redirects_the_bare_prefix_where_the_host_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIMESH_KAFKA_BOOTSTRAP", raising=False)
    app = FastAPI()
    app.router.redirect_slashes = False  # like the LangGraph server's app: no implicit redirect
    include_dashboard(app, "/dashboard")
    with TestClient(app) as client:
        response = client.get("/dashboard", follow_redirects=False)
        assert response.status_code == 308
        assert response.headers["location"] == "/dashboard/"
        assert '<base href="/dashboard/">' in client.get("/dashboard").text


def test_task_detail_endpoint(
    monkeypatch: pytest.MonkeyPatch, mesh_run: Callable[..., Any]
) -> None:
    monkeypatch.delenv("AIMESH_KAFKA_BOOTSTRAP", raising=False)
    service = DashboardService()
    app = FastAPI()
    include_dashboard(app, "/dashboard", create_router(service=service))
    run = mesh_run("HumanEval/7", passed=True, reward=0.9)
    service.aggregator.ingest("ai_reports", encode(run.report).value)
    with TestClient(app) as client:
        found = client.get("/dashboard/api/task", params={"task_id": "HumanEval/7"})
        assert found.status_code == 200
        assert found.json()["attempts"][0]["passed"] is True
        assert found.json()["run_id"] == run.state.run_id
        other_run = {"task_id": "HumanEval/7", "run_id": "another"}
        assert client.get("/dashboard/api/task", params=other_run).status_code == 404
        missing = client.get("/dashboard/api/task", params={"task_id": "nope"})
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_learning_endpoint_shows_rounds_decisions_and_adapters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AIMESH_KAFKA_BOOTSTRAP", raising=False)
    settings = Settings(data_dir=tmp_path)
    registry = PromptRegistry.for_settings(settings, SEED_PROMPTS)
    good = registry.add_candidate(CONSUMER_ADAPTER, "consumer-r1", "v0", source="expert-iteration")
    registry.promote(CONSUMER_ADAPTER, good.version, "validation reward 0.61 vs v0 0.52")
    bad = registry.add_candidate(CONSUMER_ADAPTER, "consumer-r2", good.version)
    registry.reject(CONSUMER_ADAPTER, bad.version, "validation reward 0.50 vs v1 0.61")
    registry.db.close()
    app = FastAPI()
    include_dashboard(app, "/dashboard", create_router(learning_settings=settings))
    with TestClient(app) as client:
        view = client.get("/dashboard/api/learning").json()
    decisions = [(r["version"], r["decision"], r["text"]) for r in view["rounds"]]
    assert decisions == [
        (bad.version, "rejected", "consumer-r2"),
        (good.version, "promoted", "consumer-r1"),
    ]
    assert view["rounds"][1]["detail"] == "validation reward 0.61 vs v0 0.52"
    assert view["active"][CONSUMER_ADAPTER] == good.version
    assert view["adapters"] == {
        "v0": "none",
        good.version: "consumer-r1",
        bad.version: "consumer-r2",
    }


def test_the_learning_view_keeps_its_registry_between_polls_and_reopens_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened: list[PromptRegistry] = []
    real = PromptRegistry.for_settings

    def counting(settings: Settings, seeds: Any) -> PromptRegistry:
        opened.append(real(settings, seeds))
        return opened[-1]

    monkeypatch.setattr(PromptRegistry, "for_settings", counting)
    reader = RegistryReader(Settings(data_dir=tmp_path))
    first, second = reader.view(), reader.view()
    assert first == second and len(opened) == 1  # one registry for every poll
    opened[0].db.close()  # the store goes away under it: that read fails, the next reopens
    with pytest.raises(Exception, match="closed"):
        reader.view()
    assert reader.view() == first and len(opened) == 2
    reader.close()
