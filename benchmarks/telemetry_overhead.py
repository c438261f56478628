"""Telemetry overhead per node step: the same graph runs (scripted LLM test double, real sandbox)
with no edge sink, with transitions published to Kafka, and with transitions plus telemetry
events, interleaved in one run against the embedded broker. Reported as ratios to the baseline.

    python -m benchmarks.telemetry_overhead [--runs 20]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from app.services import build_context
from benchmarks.common import begin, latency_summary, write_result
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.edges import EdgeSink, StepRecord
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState
from graph.topics import ALL_TOPICS
from kafka_edges.broker import broker_for
from nodes import NODE_FUNCTIONS


class TimedSink:
    """Wraps a sink (or none) and times each step's publishing."""

    def __init__(self, inner: EdgeSink | None) -> None:
        self.inner = inner
        self.publish_ms: list[float] = []

    def on_step(self, step: StepRecord) -> None:
        started = time.perf_counter()
        if self.inner is not None:
            self.inner.on_step(step)
        self.publish_ms.append((time.perf_counter() - started) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="graph runs per variant")
    args = parser.parse_args()
    bench = begin(runs=args.runs)
    console = Console()
    settings = Settings(llm="scripted", review_with_llm=False)
    services = build_context(settings)
    with broker_for(settings, topics=ALL_TOPICS) as broker:
        transitions = KafkaEdgeSink(broker.settings, telemetry=False)
        with_telemetry = KafkaEdgeSink(broker.settings, telemetry=True)
        variants = {
            "no publishing": TimedSink(None),
            "transitions": TimedSink(transitions),
            "transitions + telemetry": TimedSink(with_telemetry),
        }
        graphs = {
            name: compile_mesh(NODE_FUNCTIONS, edge_sink=sink) for name, sink in variants.items()
        }
        step_ms: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(args.runs):  # interleaved: load changes hit every variant alike
            for name, graph in graphs.items():
                before = len(variants[name].publish_ms)
                started = time.perf_counter()
                graph.invoke(MeshState(task_index=run % 6), context=services)
                steps = len(variants[name].publish_ms) - before
                step_ms[name].append((time.perf_counter() - started) * 1000 / steps)
        transitions.close()
        with_telemetry.close()
    base = latency_summary(step_ms["no publishing"])["median_ms"]
    rows: dict[str, dict[str, Any]] = {
        name: {
            "step": latency_summary(step_ms[name]),
            "publish": latency_summary(variants[name].publish_ms),
            "ratio_to_baseline": round(latency_summary(step_ms[name])["median_ms"] / base, 3),
        }
        for name in variants
    }
    path = write_result(
        "telemetry_overhead", {"runs_per_variant": args.runs, "variants": rows}, bench
    )
    table = Table(title="Telemetry overhead per node step (median)")
    for column in ("variant", "step ms", "publish ms", "ratio"):
        table.add_column(column)
    for name, row in rows.items():
        table.add_row(
            name,
            f"{row['step']['median_ms']:.2f}",
            f"{row['publish']['median_ms']:.2f}",
            f"{row['ratio_to_baseline']:.3f}",
        )
    console.print(table)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
