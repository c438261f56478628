"""The dashboard in a real headless Chromium, fed by a real (embedded) Kafka broker.

Starts tansu, runs `aimesh dashboard` (as `python -m app.cli.main dashboard`) against it, opens the
page, publishes a batch of mesh traffic (the mesh's own TelemetryEvent, ReportMessage and
BatchAuditMessage wire format, plus a flat report and a malformed message) and checks that the
page shows it: counts, charts with readable axes, and a task's detail view.
Saves screenshots to artifacts/dashboard.png and artifacts/dashboard-task.png. Needs
scripts/install_browser.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from graph.state import BatchAudit
from graph.wire import BatchAuditMessage
from kafka_edges.broker import EmbeddedBroker, free_port
from kafka_edges.codec import encode

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (scripts/install_browser.sh)"
)
expect = sync_api.expect

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
WAIT_MS = 15_000
"""Upper bound for anything to show up on the page (it normally takes well under a second)."""


def chromium_path() -> str | None:
    explicit = os.environ.get("AIMESH_CHROMIUM")
    if explicit:
        return explicit
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def dashboard(
    broker: EmbeddedBroker, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`aimesh dashboard` on a free port; yields (url, process)."""
    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "dashboard",
            "--port",
            str(port),
            "--bootstrap",
            broker.bootstrap,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the dashboard exited at start: {(tmp_path / 'dashboard.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(url + "api/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the dashboard did not answer within 30 s")
                time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    executable = chromium_path()
    assert executable is not None, "chromium is not installed: run scripts/install_browser.sh"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes | None]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "logger": _Quiet()})
    for topic, value, key in records:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(10) == 0, "not every test record was delivered"


class _Quiet:
    def log(self, *args: object) -> None:
        pass


# (task id, seconds ago, passed, reward, consumer latency ms, verdict, consumer prompt version)
RUNS = [
    ("t-01", 420, True, 0.55, 2100, "ok", "consumer@v2"),
    ("t-02", 360, False, 0.10, 2600, "warn", "consumer@v2"),
    ("t-03", 300, True, 0.62, 1800, "ok", "consumer@v2"),
    ("t-04", 240, True, 0.70, 1500, "ok", "consumer@v2"),
    ("t-05", 180, False, 0.20, 2900, "warn", "consumer@v2"),
    ("t-06", 120, True, 0.78, 1300, "ok", "consumer@v3"),
    ("t-07", 40, True, 0.85, 1100, "ok", "consumer@v3"),
    ("t-08", 25, True, 0.92, 900, "ok", "consumer@v3"),
]


def test_dashboard_shows_live_telemetry_in_chromium(
    broker: EmbeddedBroker,
    dashboard: tuple[str, subprocess.Popen[bytes]],
    page: Any,
    mesh_run: Callable[..., Any],
) -> None:
    url, process = dashboard
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )

    page.goto(url)
    expect(page.get_by_test_id("stream-status")).to_have_text("stream: live", timeout=WAIT_MS)
    expect(page.get_by_test_id("kpi-tasks-finished")).to_have_text("0")

    # ---- the mesh's traffic: telemetry for every step, then the supervisor's reports
    now = datetime.now(UTC)
    records: list[tuple[str, bytes, bytes | None]] = []
    reports: list[tuple[str, bytes, bytes | None]] = []
    summaries = {}
    for task_id, ago, passed, reward, latency, verdict, version in RUNS:
        run = mesh_run(
            task_id,
            passed=passed,
            reward=reward,
            verdict=verdict,
            findings=() if passed else ("unsolved after 1 attempt(s)",),
            latency_ms={
                "producer": 700,
                "consumer": latency,
                "sandbox": 45,
                "reviewer": 950,
                "supervisor": 4,
            },
            tokens={"producer": 310, "consumer": 420, "reviewer": 260},
            memory_hits={"producer": 1, "consumer": 2},
            prompt_versions={"producer": "producer@v1", "consumer": version},
            at=now - timedelta(seconds=ago),
        )
        summaries[task_id] = run.state.report.summary
        records += [(r.TOPIC, encode(r).value, encode(r).key) for r in run.events]
        reports.append((run.report.TOPIC, encode(run.report).value, encode(run.report).key))
    # a task still in flight: producer and consumer have run, nothing else yet
    running = mesh_run(
        "t-10",
        passed=True,
        reward=0.5,
        latency_ms={"consumer": 1775},
        prompt_versions={"producer": "producer@v1", "consumer": "consumer@v3"},
        at=now - timedelta(seconds=5),
    )
    records += [(e.TOPIC, encode(e).value, encode(e).key) for e in running.events[:2]]
    # a flat report from another producer (no telemetry, no pass/fail), and a malformed message
    flat = {
        "task_id": "t-09",
        "verdict": "flag",
        "findings": ["suspicious code: os.system"],
        "summary": "Task t-09 flagged by the supervisor: suspicious code.",
        "wall_time_s": 3.1,
        "tokens_used": 512,
    }
    reports.append(("ai_reports", json.dumps(flat).encode(), b"t-09"))
    # the supervisor's audit of the whole batch: a batch, not a tenth task
    audit = BatchAuditMessage.of(
        BatchAudit(
            batch_id="b-42", tasks=8, pass_rate=0.75, mean_reward=0.59, reward_trend=0.1,
            tokens_used=7960, wall_time_s=33.6, anomalies=["2 tasks unsolved"], verdict="warn",
            summary="8 tasks, 6 solved, reward trending up",
        )
    )  # fmt: skip
    reports.append((audit.TOPIC, encode(audit).value, encode(audit).key))
    records.append(("ai_telemetry", b"{this is not json", None))
    _produce(broker.bootstrap, records + reports)

    # ---- totals
    expect(page.get_by_test_id("kpi-tasks-finished")).to_have_text("9", timeout=WAIT_MS)
    expect(page.get_by_test_id("kpi-outcomes")).to_have_text(
        "6 passed · 2 failed · 1 unknown", timeout=WAIT_MS
    )
    expect(page.get_by_test_id("kpi-pass-rate")).to_have_text("75%")
    expect(page.get_by_test_id("kpi-pass-detail")).to_have_text("6 of 8 tasks passed")
    expect(page.get_by_test_id("kpi-tasks-per-min")).to_have_text("3")  # t-07, t-08, t-09
    expect(page.get_by_test_id("kpi-in-progress")).to_have_text("1 in progress")
    expect(page.get_by_test_id("kpi-mean-reward")).to_have_text("0.59")
    expect(page.get_by_test_id("kpi-reports")).to_have_text("9")
    expect(page.locator('#batches tr[data-batch="b-42"]')).to_contain_text("2 tasks unsolved")
    expect(page.locator('#batches tr[data-batch="b-42"] .badge.warn')).to_have_text("warn")
    expect(page.get_by_test_id("kpi-verdicts")).to_have_text("ok 6 · warn 2 · flag 1")
    expect(page.get_by_test_id("kpi-events")).to_have_text("42 steps")  # 8 x 5 + 2
    # 8 tasks x (1 + 2); the task in flight had none
    expect(page.get_by_test_id("kpi-memory-hits")).to_have_text("24")
    expect(page.get_by_test_id("kpi-rejected")).to_have_text("1")
    expect(page.get_by_test_id("source-status")).to_have_attribute("data-state", "connected")

    # ---- per agent: the consumer's latency (mean of 8 + 1 steps = 1,775 ms) and tokens
    consumer = page.locator('#agents tr[data-agent="consumer"]')
    expect(consumer.locator('[data-col="steps"]')).to_have_text("9")
    expect(consumer.locator('[data-col="latency_mean_ms"]')).to_have_text("1,775 ms")
    expect(consumer.locator('[data-col="latency_last_ms"]')).to_have_text("1,775 ms")
    expect(consumer.locator('[data-col="tokens_total"]')).to_have_text("3,360")
    expect(page.locator("#agents tbody tr")).to_have_count(5)
    expect(page.locator("#agents tbody tr").first).to_have_attribute("data-agent", "producer")

    # ---- prompt versions, reports, failures, rejected messages
    current = page.locator('#prompts tr[data-agent="consumer"][data-version="consumer@v3"]')
    expect(current).to_contain_text("in use")
    expect(page.locator('#prompts tr[data-version="consumer@v2"]')).not_to_contain_text("in use")
    expect(page.locator('#reports tr[data-task="t-08"]')).to_contain_text(summaries["t-08"])
    expect(page.locator('#reports tr[data-task="t-09"]')).to_contain_text(
        "flagged by the supervisor"
    )
    expect(page.locator('#reports tr[data-task="t-09"]')).to_contain_text(
        "suspicious code: os.system"
    )
    expect(page.locator('#reports tr[data-task="t-05"] .badge.warn')).to_have_text("warn")
    expect(page.locator("#failures tbody tr")).to_have_count(2)
    expect(page.locator('#failures tr[data-task="t-05"]')).to_contain_text("AssertionError")
    # the failing tests failed t-05 in the sandbox; the supervisor only reported it
    expect(page.locator('#failures tr[data-task="t-05"] td').nth(2)).to_have_text("sandbox")
    expect(page.locator("#rejected-card")).to_be_visible()
    expect(page.locator("#rejected")).to_contain_text("malformed_json")

    # ---- the charts are Chart.js charts holding the data
    charts = page.evaluate(
        """() => ({
            isChartJs: Object.values(window.aimeshCharts).every((c) => c instanceof Chart),
            rewardPoints: aimeshCharts.reward.data.datasets[0].data.map((p) => p.y),
            latencyLabels: aimeshCharts.latency.data.labels,
            latencyMeans: aimeshCharts.latency.data.datasets[0].data,
            throughput: aimeshCharts.throughput.data.datasets.map((d) => d.data.reduce((a, b) => a + b, 0)),
            throughputBars: aimeshCharts.throughput.data.labels.length,
            throughputLabels: aimeshCharts.throughput.scales.x.ticks.map((t) => t.label),
            rewardLabels: aimeshCharts.reward.scales.x.ticks.map((t) => t.label),
        })"""
    )
    assert charts["isChartJs"]
    assert charts["rewardPoints"] == [r[3] for r in RUNS]  # in time order
    assert charts["latencyLabels"] == ["producer", "consumer", "sandbox", "reviewer", "supervisor"]
    assert charts["latencyMeans"][1] == 1775
    assert charts["throughput"] == [6, 2, 1]  # passed, failed, unknown
    # the window fits the data: 7 minutes of tasks in 15 s buckets, not 30 one-minute bars
    expect(page.get_by_test_id("throughput-window")).to_have_text("(tasks finished per 15 s)")
    assert 28 <= charts["throughputBars"] <= 30
    # readable time axes: a few labels, none repeated
    for labels in (charts["rewardLabels"], charts["throughputLabels"]):
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # ---- a task's detail: its attempts, code, verdict, critique and reward components
    expect(page.get_by_test_id("task-detail")).to_be_hidden()
    page.locator('#reports tr[data-task="t-05"] a.task-link').click()
    detail = page.get_by_test_id("task-detail")
    expect(detail).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("detail-title")).to_have_text("t-05")
    expect(page.get_by_test_id("detail-outcome")).to_have_text("failed")
    expect(page.get_by_test_id("detail-status")).to_contain_text("failed at the sandbox")
    expect(page.get_by_test_id("detail-signature")).to_have_text("def add(a: int, b: int) -> int")
    attempt = detail.locator('[data-attempt="1"]')
    expect(attempt.get_by_test_id("detail-code")).to_have_text("def add(a, b):\n    return a + b\n")
    expect(attempt.get_by_test_id("detail-verdict")).to_contain_text("1/3 public · AssertionError")
    expect(attempt.get_by_test_id("detail-feedback")).to_contain_text("1/3 tests passed")
    expect(page.get_by_test_id("detail-critique")).to_have_text("fine")
    scores = page.get_by_test_id("detail-scores")
    expect(scores.locator('tr[data-score="correctness"] td').nth(1)).to_have_text("0.00")
    expect(scores.locator('tr[data-score="reward"] td').nth(1)).to_have_text("0.20")
    expect(page.get_by_test_id("detail-report")).to_contain_text("warn: Task t-05 not solved")
    assert "task=t-05" in page.url  # a link to the view, kept in the address
    page.screenshot(path=str(ARTIFACTS / "dashboard-task.png"), full_page=True)
    page.get_by_test_id("detail-close").click()
    expect(detail).to_be_hidden()
    assert problems == []

    # ---- Ctrl-C with a stream open: the server stops promptly, the page notices
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the dashboard did not stop within 10 s of SIGINT with a browser connected")
    expect(page.get_by_test_id("stream-status")).to_have_text(
        "stream: reconnecting", timeout=WAIT_MS
    )
