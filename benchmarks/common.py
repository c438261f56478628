"""What every benchmark shares: latency summaries, machine facts, and where results go."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    """Median, p90, p99, mean, min and max of latency samples (ms)."""
    cuts = statistics.quantiles(samples_ms, n=100) if len(samples_ms) > 1 else samples_ms * 99
    return {
        "median_ms": round(statistics.median(samples_ms), 3),
        "p90_ms": round(cuts[89], 3),
        "p99_ms": round(cuts[98], 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
        "min_ms": round(min(samples_ms), 3),
        "max_ms": round(max(samples_ms), 3),
        "n": len(samples_ms),
    }


def machine_info() -> dict[str, Any]:
    """The facts that make a result comparable: CPU, cores, kernel, Python, load."""
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json (with machine facts) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
    return path


def llm_overrides(llm: str, base_url: str | None) -> dict[str, Any]:
    """Settings overrides for a benchmark's LLM: `llm` (auto, local, scripted, ...), or the
    OpenAI-compatible endpoint at `base_url` when given."""
    return {"llm": "openai", "llm_base_url": base_url} if base_url else {"llm": llm}


@contextmanager
def saved_figure(path: Path, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """`plt.subplots(*args, **kwargs)` on the headless Agg backend; the figure is laid out,
    saved to `path` (120 dpi) and closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
