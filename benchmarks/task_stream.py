"""A frozen stream of the loop's own produced tasks, for benchmarks whose arms must see the same
work: the real producer node (with memory, which names one of the least covered categories in
each request, so categories recur across the stream) is asked until `--count` tasks are
accepted. Every request's result is appended to the JSONL file at once, so the same command
continues an interrupted generation; `load_stream` reads the accepted tasks back.

    .venv/bin/python -m benchmarks.task_stream [--count 72] [--out FILE] [--llm scripted]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime
from rich.console import Console

from app.cli.common import progress
from app.cli.learn import stop_on_sigterm
from app.services import build_context
from benchmarks.common import llm_overrides
from benchmarks.paired_runs import readable_failures
from benchmarks.resumable import RUNS_DIR
from foundation.settings import Settings
from graph.context import MeshContext
from graph.state import MeshState, Task
from nodes.producer import producer

STREAM = Path(__file__).resolve().parent / "data" / "produced_tasks_0.5b.jsonl"
"""The committed stream the recurring-work benchmarks read by default."""

console = Console()


def load_stream(path: Path, limit: int | None = None) -> list[Task]:
    """The accepted tasks of a stream file, in the order they were produced."""
    if not path.exists():
        raise FileNotFoundError(
            f"no task stream at {path}: generate it with `python -m benchmarks.task_stream`"
        )
    rows = [json.loads(line) for line in path.open() if line.strip()]
    return [Task.model_validate(r["task"]) for r in rows if r["task"]][:limit]


def request(services: MeshContext, index: int) -> dict[str, Any]:
    """One producer request: accepted or not, its category and the task."""
    started = time.perf_counter()
    update = producer(MeshState(task_index=index), Runtime(context=services))
    task = update.get("task") if update["status"] == "solving" else None
    return {
        "request": index,
        "accepted": task is not None,
        "category": task.category if task else None,
        "seconds": round(time.perf_counter() - started, 2),
        "error": update.get("error"),
        "task": task.model_dump(mode="json") if task else None,
    }


def generate(settings: Settings, out: Path, count: int, *, use_memory: bool = True) -> None:
    """Ask the producer until `out` holds `count` accepted tasks (continuing the file)."""
    rows = [json.loads(line) for line in out.open() if line.strip()] if out.exists() else []
    accepted = sum(r["accepted"] for r in rows)
    services = build_context(settings, use_memory=use_memory)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with progress() as bars:
            bar = bars.add_task("accepted tasks", total=count, completed=accepted)
            index = len(rows)
            while accepted < count:
                row = request(services, index)
                with out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                accepted += row["accepted"]
                index += 1
                bars.update(bar, completed=accepted, description=f"{index} requests")
    finally:
        if services.memory is not None:
            services.memory.close()


def categories(path: Path) -> dict[str, int]:
    """How often each category occurs in the stream."""
    return dict(Counter(task.category for task in load_stream(path)).most_common())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=72, help="accepted tasks wanted")
    parser.add_argument("--out", type=Path, default=STREAM)
    parser.add_argument("--llm", default="auto", help="auto | openai | local | scripted")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--no-memory", action="store_true", help="a producer blind to coverage")
    parser.add_argument("--data-dir", type=Path, default=RUNS_DIR / "task_stream")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    settings = Settings(**llm_overrides(args.llm, args.base_url), data_dir=args.data_dir)
    with readable_failures():
        generate(settings, args.out, args.count, use_memory=not args.no_memory)
    console.print(f"{args.out}: {len(load_stream(args.out))} tasks, {categories(args.out)}")


if __name__ == "__main__":
    main()
