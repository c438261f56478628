"""What a run costs on the docker backend against the local one, measured in the same run.

    .venv/bin/python -m benchmarks.docker_overhead [--runs 20]

One process takes interleaved samples (bare interpreter start, local job, docker job, bare, ...)
of the same trivial job, so machine load affects each alike; the docker backend runs on its
default image (built from the host's Python, `aimesh sandbox build-image`). Reports medians, the
docker/local ratio of medians with a paired bootstrap 95 % interval, and how long the docker
backend takes to start (content hash of the image, engine checks). Writes
benchmarks/results/docker_overhead.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from benchmarks.common import begin, latency_summary, write_result
from sandbox import SandboxError, SandboxJob
from sandbox.docker import DockerSandbox
from sandbox.local import LocalSandbox, sandbox_python

WARMUP = 3
JOB = SandboxJob(
    code="def add(a, b):\n    return a + b\n", tests=["assert add(1, 2) == 3"], entry_point="add"
)


def timed_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def passing(backend: LocalSandbox | DockerSandbox) -> Callable[[], None]:
    def run() -> None:
        if not backend.run(JOB).passed:
            raise SystemExit(f"the benchmark job failed on the {backend.name} backend")

    return run


def ratio_interval(docker: list[float], local: list[float]) -> tuple[float, float]:
    """Paired bootstrap 95 % interval of median(docker) / median(local)."""
    result = bootstrap(
        (np.array(docker), np.array(local)),
        lambda d, loc: np.median(d) / np.median(loc),
        paired=True,
        vectorized=False,
        n_resamples=2000,
        random_state=0,
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    run = begin(runs=args.runs, warmup=WARMUP)

    started = time.perf_counter()
    try:
        docker = DockerSandbox(timeout_s=30)
    except SandboxError as exc:
        raise SystemExit(f"docker_overhead: {exc}") from None
    docker_start_s = time.perf_counter() - started
    local = LocalSandbox(timeout_s=30)
    bare = [sandbox_python()[0], "-c", "pass"]
    actions: dict[str, Callable[[], object]] = {
        "bare": lambda: subprocess.run(bare, check=True),
        "local": passing(local),
        "docker": passing(docker),
    }
    for _ in range(WARMUP):
        for action in actions.values():
            action()
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(args.runs):
        for name, action in actions.items():
            samples[name].append(timed_ms(action))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    low, high = ratio_interval(samples["docker"], samples["local"])
    report: dict[str, Any] = {
        "job": JOB.model_dump(include={"code", "tests"}),
        "docker_image": docker.image,
        "docker_backend_start_s": round(docker_start_s, 3),
        **{name: latency_summary(values) for name, values in samples.items()},
        "docker_minus_local_median_ms": round(medians["docker"] - medians["local"], 1),
        "docker_over_local_median_ratio": round(medians["docker"] / medians["local"], 2),
        "ratio_95ci_paired_bootstrap": [round(low, 2), round(high, 2)],
    }
    path = write_result("docker_overhead", report, run)
    print(
        f"median per run: bare {medians['bare']:.1f} ms, local {medians['local']:.1f} ms, "
        f"docker {medians['docker']:.1f} ms: x{medians['docker'] / medians['local']:.2f} local "
        f"(95 % CI x{low:.2f}-x{high:.2f}); docker backend start {docker_start_s:.2f} s; "
        f"load {run.load_before} -> see {path}"
    )


if __name__ == "__main__":
    main()
