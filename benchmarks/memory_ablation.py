"""Memory ablation: the same HumanEval problems through the loop without and with mem0 memory.

    .venv/bin/python -m benchmarks.memory_ablation [--limit 40] [--attempts 3] [--base-url URL]

Both arms run in one process against the same model (the embedded llama.cpp server unless
``--base-url``), first attempt at temperature 0, retries as in `aimesh eval`. The memory arm
starts from an empty store and learns as it goes (fix recipes, best practices), so later
problems can recall what earlier ones taught. Reports pass@1 (first attempt, loop), attempts per
solved problem and memory hits; writes benchmarks/results/memory_ablation.{json,png}.
With ``--baseline REPORT`` the arm without memory is read from a full `aimesh eval --json` run
with the same settings (its first ``--limit`` problems) instead of being run again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app.humaneval import EvalSummary, evaluate, summarise
from app.services import build_context
from benchmarks.common import (
    RESULTS_DIR,
    begin,
    llm_overrides,
    saved_figure,
    write_result,
)
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.checkpoint import memory_checkpointer
from graph.datasets import humaneval_tasks
from graph.runner import BatchRunner
from graph.state import TaskOutcome
from nodes import NODE_FUNCTIONS

console = Console()


def run_arm(settings: Settings, use_memory: bool, limit: int, attempts: int) -> dict[str, Any]:
    """One arm: every problem through the graph with or without memory."""
    services = build_context(settings, use_memory=use_memory)
    runner = BatchRunner(compile_mesh(NODE_FUNCTIONS, memory_checkpointer()), services)
    tasks = humaneval_tasks(limit)
    label = "with memory" if use_memory else "without memory"
    with Progress(console=console) as progress:
        bar = progress.add_task(label, total=len(tasks))
        summary, outcomes = evaluate(
            runner, tasks, attempts, on_done=lambda _o: progress.advance(bar)
        )
    if services.memory is not None:
        services.memory.close()
    return {"summary": summary.model_dump(), "problems": [o.model_dump() for o in outcomes]}


def baseline_arm(report: Path, limit: int, attempts: int, retry_strategy: str) -> dict[str, Any]:
    """The arm without memory from an earlier full evaluation report (first `limit` problems)."""
    payload = json.loads(report.read_text())
    summary = payload["summary"]
    same = (summary.get("memory"), summary["attempts"], summary.get("retry_strategy", "repair"))
    if same != (False, attempts, retry_strategy):
        raise SystemExit(
            f"{report}: not a run without memory at --attempts {attempts} with {retry_strategy} "
            "retries"
        )
    outcomes = [TaskOutcome.model_validate(p) for p in payload["problems"][:limit]]
    if len(outcomes) < limit:
        raise SystemExit(f"{report}: only {len(outcomes)} problems, {limit} wanted")
    total = sum(o.seconds for o in outcomes)
    baseline = summarise(
        outcomes,
        attempts,
        summary["model"],
        memory=False,
        retry_strategy=retry_strategy,
        total_seconds=total,
    )
    return {
        "summary": baseline.model_dump(),
        "problems": [o.model_dump() for o in outcomes],
        "source": str(report),
    }


def chart(arms: list[EvalSummary], path: Path, title: str) -> None:

    labels = ["without memory" if not a.memory else "with memory" for a in arms]
    with saved_figure(path, 1, 2, figsize=(8, 4), width_ratios=(2, 1)) as (fig, (left, right)):
        width = 0.38
        for offset, (metric, name) in zip(
            (-width / 2, width / 2),
            (("pass_at_1_first_attempt", "first attempt"), ("pass_at_1_loop", "loop")),
            strict=True,
        ):
            values = [getattr(a, metric) * 100 for a in arms]
            bars = left.bar([i + offset for i in range(len(arms))], values, width, label=name)
            left.bar_label(bars, fmt="%.1f", fontsize=8)
        left.set_xticks(range(len(arms)), labels)
        left.set_ylabel("pass@1 (%)")
        left.set_ylim(0, 100)
        left.legend(fontsize=8)
        bars = right.bar(labels, [a.mean_attempts_solved for a in arms], color="grey")
        right.bar_label(bars, fmt="%.2f", fontsize=8)
        right.set_ylabel("attempts per solved problem")
        fig.suptitle(title, fontsize=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=40, help="first N HumanEval problems")
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--llm", default="auto", help="auto | openai | local | scripted")
    parser.add_argument("--name", default="memory_ablation")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="take the arm without memory from this `aimesh eval --json` report (its first "
        "--limit problems, same model and --attempts) instead of running it again",
    )
    args = parser.parse_args()
    run = begin(**vars(args))

    overrides = {
        **llm_overrides(args.llm, args.base_url),
        "review_with_llm": False,
        "llm_temperature": 0.0,
    }
    strategy = Settings(**overrides).retry_strategy
    arms = (
        [baseline_arm(args.baseline, args.limit, args.attempts, strategy)] if args.baseline else []
    )
    for use_memory in (False, True)[len(arms) :]:
        data_dir = Path(tempfile.mkdtemp(prefix="aimesh-ablation-"))
        arms.append(
            run_arm(Settings(**overrides, data_dir=data_dir), use_memory, args.limit, args.attempts)
        )
    summaries = [EvalSummary.model_validate(a["summary"]) for a in arms]
    title = (
        f"Memory ablation, HumanEval first {args.limit}, K={args.attempts}, {summaries[0].model}"
    )
    path = write_result(
        args.name, {"benchmark": "memory_ablation", "title": title, "arms": arms}, run
    )
    chart(summaries, RESULTS_DIR / f"{args.name}.png", title)

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("without memory", justify="right")
    table.add_column("with memory", justify="right")
    for key, value in summaries[0].model_dump().items():
        table.add_row(key, str(value), str(getattr(summaries[1], key)))
    console.print(table)
    console.print(f"written {path} and its chart")


if __name__ == "__main__":
    main()
