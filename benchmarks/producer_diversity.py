"""Producer diversity and acceptance: distinct task categories per N tasks, without vs with memory.

    .venv/bin/python -m benchmarks.producer_diversity [--tasks 20] [--base-url URL] [--llm scripted]

Runs the real producer node N times per arm (task index 0..N-1, difficulty rising as in a batch):
once with no memory, once with a fresh mem0 store that records each accepted task's category and
steers the next request to uncovered categories. Every task is validated in the sandbox against
its own reference solution, so the run also measures the producer's acceptance rate and LLM
tries per accepted task. Writes benchmarks/results/producer_diversity.{json,png}.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.runtime import Runtime
from rich.console import Console
from rich.progress import track
from rich.table import Table

from app.services import build_context
from benchmarks.common import RESULTS_DIR, begin, llm_overrides, saved_figure, write_result
from foundation.settings import Settings
from graph.state import MeshState
from llm.chat import model_label
from nodes.producer import producer

console = Console()


class CallCounter(BaseCallbackHandler):
    """Counts chat-model calls (the producer's tries) and keeps the last answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.last_answer = ""

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.last_answer = response.generations[0][0].text


def run_arm(settings: Settings, use_memory: bool, tasks: int) -> dict[str, Any]:
    """Produce `tasks` tasks with one producer configuration; per-task rows and a summary."""
    services = build_context(settings, use_memory=use_memory)
    counter = CallCounter()
    services.llm.callbacks = [counter]
    rows = []
    label = "with memory" if use_memory else "without memory"
    for index in track(range(tasks), description=f"producer {label}", console=console):
        before, started = counter.calls, time.perf_counter()
        update = producer(MeshState(task_index=index), Runtime(context=services))
        task = update.get("task")
        rows.append(
            {
                "index": index,
                "accepted": update["status"] == "solving",
                "tries": counter.calls - before,
                "category": task.category if task else None,
                "difficulty": task.difficulty if task else None,
                "entry_point": task.entry_point if task else None,
                "memory_hits": update.get("memory_hits", 0),
                "seconds": round(time.perf_counter() - started, 2),
                "error": update.get("error"),
                "last_answer": None if task else counter.last_answer,
            }
        )
    if services.memory is not None:
        services.memory.close()
    return {"memory": use_memory, "summary": summarise(rows), "tasks": rows}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Acceptance, tries and category diversity (distinct count and normalised entropy)."""
    accepted = [r for r in rows if r["accepted"]]
    categories = Counter(r["category"] for r in accepted)
    n = len(accepted)
    entropy = -sum(c / n * math.log(c / n) for c in categories.values()) if n else 0.0
    return {
        "tasks": len(rows),
        "accepted": n,
        "acceptance_rate": round(n / len(rows), 3) if rows else 0.0,
        "accepted_first_try": sum(1 for r in accepted if r["tries"] == 1),
        "tries_per_accepted": round(sum(r["tries"] for r in accepted) / n, 2) if n else 0.0,
        "distinct_categories": len(categories),
        "category_entropy_normalised": round(entropy / math.log(n), 3) if n > 1 else 0.0,
        "distinct_entry_points": len({r["entry_point"] for r in accepted}),
        "mean_difficulty": round(sum(r["difficulty"] for r in accepted) / n, 2) if n else 0.0,
        "categories": dict(categories.most_common()),
        "seconds_per_task": round(sum(r["seconds"] for r in rows) / len(rows), 2),
    }


def cumulative_distinct(rows: list[dict[str, Any]]) -> list[int]:
    """Distinct categories among the accepted tasks after each task."""
    seen: set[str] = set()
    curve = []
    for row in rows:
        if row["accepted"]:
            seen.add(row["category"])
        curve.append(len(seen))
    return curve


def chart(arms: list[dict[str, Any]], path: Path, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    with saved_figure(path, figsize=(7, 4.2)) as (_, ax):
        for arm, style in zip(arms, ("s--", "o-"), strict=True):
            curve = cumulative_distinct(arm["tasks"])
            s = arm["summary"]
            label = (
                f"{'with' if arm['memory'] else 'without'} memory: {s['distinct_categories']} "
                f"categories, {s['accepted']}/{s['tasks']} accepted"
            )
            ax.plot(range(1, len(curve) + 1), curve, style, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tasks requested")
        ax.set_ylabel("distinct categories so far (accepted tasks)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--llm", default="auto", help="auto | openai | local | scripted")
    parser.add_argument("--name", default="producer_diversity")
    args = parser.parse_args()
    run = begin(**vars(args))

    overrides = llm_overrides(args.llm, args.base_url)
    arms = []
    started = time.perf_counter()
    for use_memory in (False, True):
        data_dir = Path(tempfile.mkdtemp(prefix="aimesh-diversity-"))
        settings = Settings(**overrides, data_dir=data_dir)
        arms.append(run_arm(settings, use_memory, args.tasks))
    model = model_label(settings)
    title = f"Producer diversity, {model}, {args.tasks} tasks per arm"
    path = write_result(
        args.name,
        {
            "benchmark": "producer_diversity",
            "title": title,
            "config": {
                "tasks": args.tasks,
                "model": model,
                "temperature": settings.llm_temperature,
                "ground_tests": settings.producer_ground_tests,
            },
            "arms": arms,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        run,
    )
    chart(arms, RESULTS_DIR / f"{args.name}.png", title)

    table = Table(title=title)
    table.add_column("metric")
    for arm in arms:
        table.add_column("with memory" if arm["memory"] else "without memory", justify="right")
    for key, value in arms[0]["summary"].items():
        if key != "categories":
            table.add_row(key, str(value), str(arms[1]["summary"][key]))
    console.print(table)
    console.print(f"written {path} and its chart")


if __name__ == "__main__":
    main()
