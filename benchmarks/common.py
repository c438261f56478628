"""What every benchmark shares: percentiles, the run record every results file carries (commit,
machine, settings, load before and after, a flag when the machine was loaded), and where results
go. Every benchmark calls `begin()` first and writes through `write_result`/`write_json`."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parent.parent


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics (the
    "inclusive" method: numpy's default, `statistics.quantiles(method="inclusive")`), so it never
    leaves [min, max], however small the sample."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    """Median, p90, p99, mean, min and max of latency samples (ms); inclusive percentiles."""
    return {
        "median_ms": round(statistics.median(samples_ms), 3),
        "p90_ms": round(percentile(samples_ms, 90), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
        "min_ms": round(min(samples_ms), 3),
        "max_ms": round(max(samples_ms), 3),
        "n": len(samples_ms),
    }


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (the same string for every benchmark)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cores() -> int:
    """CPUs this process may run on (the affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def commit() -> str:
    """The checked-out commit (with `-dirty` when tracked files differ from it)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--"], timeout=10
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


@dataclass
class BenchmarkRun:
    """When a benchmark started and what the machine was doing then (`begin()`)."""

    started: str
    load_before: list[float]
    commit: str
    """The code that ran: the commit when the benchmark began (not when it wrote its results)."""
    settings: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """Commit, machine, settings and load before/after; `loaded` flags a run taken while a
        1-minute load average exceeded the core count (absolute figures are then inflated)."""
        after = load_average()
        n = cores()
        loaded = max(self.load_before[0], after[0]) > n
        return {
            "commit": self.commit,
            "started": self.started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": cpu_model(),
                "cores": n,
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "settings": self.settings,
            "load_average_before": self.load_before,
            "load_average_after": after,
            "loaded": loaded,
            "warning": (
                f"load average above the {n} cores during the run: absolute figures are "
                "inflated; read the same-run ratios"
                if loaded
                else None
            ),
        }


def begin(**settings: Any) -> BenchmarkRun:
    """Call first thing in a benchmark: notes the start time, load and the settings to record."""
    return BenchmarkRun(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        load_before=load_average(),
        commit=commit(),
        settings=settings,
    )


def write_json(path: Path, payload: dict[str, Any], run: BenchmarkRun) -> Path:
    """Write `payload` to `path` with the run's record (commit, machine, load) under "run"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": run.record(), **payload}, indent=2) + "\n")
    return path


def write_result(name: str, payload: dict[str, Any], run: BenchmarkRun) -> Path:
    """Write benchmarks/results/<name>.json (with the run's record) and return its path."""
    return write_json(RESULTS_DIR / f"{name}.json", payload, run)


def stamp(path: Path, run: BenchmarkRun) -> None:
    """Add the run's record to a results file another program wrote (e.g. `aimesh eval --json`)."""
    payload = json.loads(path.read_text())
    payload.pop("run", None)
    write_json(path, payload, run)


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


def tree_of(ref: str, into: Path) -> Path:
    """The whole source tree of commit `ref`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def rate_bars(
    ax: Any,
    groups: list[str],
    series: dict[str, list[dict[str, Any]]],
    colors: dict[str, str] | None = None,
) -> None:
    """Grouped bars of rates in % with their 95 % intervals as error bars: a group per name in
    `groups`, in each a bar per series (its `rate` dicts, one per group, as
    `benchmarks.paired_runs.rate` makes them), coloured by `colors` (series -> colour) if given."""
    width = 0.8 / len(series)
    for number, (label, figures) in enumerate(series.items()):
        rates = [100 * f["rate"] for f in figures]
        low = [r - 100 * f["ci95"][0] for r, f in zip(rates, figures, strict=True)]
        high = [100 * f["ci95"][1] - r for r, f in zip(rates, figures, strict=True)]
        offset = (number - (len(series) - 1) / 2) * width
        places = [x + offset for x in range(len(groups))]
        color = (colors or {}).get(label)
        bars = ax.bar(places, rates, width, yerr=[low, high], capsize=4, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(groups)), groups)
