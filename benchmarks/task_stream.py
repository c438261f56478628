"""A frozen stream of the loop's own produced tasks, for benchmarks whose arms must see the same
work: the real producer node (with memory, which names one of the least covered categories in
each request, so categories recur across the stream) is asked until `--count` tasks are
accepted, `--concurrency` requests at once (the model server decodes them in its parallel
slots), by the local model `--model` (the 1.5B writes harder tasks than the 0.5B). Every
request's result is appended to the JSONL file as it finishes, so the same command continues an
interrupted generation; `load_stream` reads the accepted tasks back.

    .venv/bin/python -m benchmarks.task_stream [--count 72] [--out FILE] [--llm scripted]
        [--concurrency 4] [--model 1.5b]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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


def generate(
    settings: Settings, out: Path, count: int, *, use_memory: bool = True, concurrency: int = 1
) -> None:
    """Ask the producer, `concurrency` requests in flight, until `out` holds `count` accepted
    tasks (continuing the file; the requests in flight when the count is reached are kept too)."""
    rows = [json.loads(line) for line in out.open() if line.strip()] if out.exists() else []
    accepted = sum(r["accepted"] for r in rows)
    services = build_context(settings, use_memory=use_memory)
    out.parent.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(concurrency)
    in_flight: set[Future[dict[str, Any]]] = set()
    index = len(rows)
    try:
        with progress() as bars:
            bar = bars.add_task("accepted tasks", total=count, completed=accepted)
            while accepted < count or in_flight:
                while accepted < count and len(in_flight) < concurrency:
                    in_flight.add(pool.submit(request, services, index))
                    index += 1
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    row = future.result()
                    with out.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    accepted += row["accepted"]
                    bars.update(bar, completed=accepted, description=f"{index} requests")
    finally:  # a stop (SIGTERM) drops the requests not started instead of waiting for them
        pool.shutdown(wait=False, cancel_futures=True)
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
    parser.add_argument("--concurrency", type=int, default=1, help="producer requests at once")
    parser.add_argument("--model", default=None, help="the local model: 0.5b, 1.5b or a GGUF")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    model = {"local_model": args.model} if args.model else {}
    settings = Settings(**llm_overrides(args.llm, args.base_url), data_dir=args.data_dir, **model)
    with readable_failures():
        generate(
            settings,
            args.out,
            args.count,
            use_memory=not args.no_memory,
            concurrency=args.concurrency,
        )
    console.print(f"{args.out}: {len(load_stream(args.out))} tasks, {categories(args.out)}")


if __name__ == "__main__":
    main()
