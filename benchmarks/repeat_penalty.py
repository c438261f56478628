"""Does the model server's repetition penalty cost the first attempt? llama-cpp-python's server
penalises repeated tokens (1.1 over the last 64) whenever a request names no penalty, as every
request did before `llm_repeat_penalty`; code repeats names, brackets and indentation. The greedy
first attempt (column (a) of `aimesh eval`) on HumanEval with each penalty, the same problems,
interleaved in one run, judged by the hidden tests: pass@1 with Wilson intervals, the paired
difference with a bootstrap interval and the exact McNemar p. Every outcome is a row as it
finishes, so the same command resumes.

    .venv/bin/python -m benchmarks.repeat_penalty [--limit N] [--penalties 1.1,1.0] [--llm ...]
        [--fresh]

Writes benchmarks/results/repeat_penalty.json and .png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from app.services import build_context
from benchmarks.common import rate_bars, saved_figure
from benchmarks.paired_runs import (
    Arm,
    add_run_options,
    measure,
    outcomes,
    paired_rates,
    protocol_settings,
    rate,
    run_interleaved,
)
from benchmarks.resumable import ResumableRun
from graph.builder import compile_mesh
from graph.datasets import humaneval_tasks
from graph.runner import BatchRunner
from graph.state import TaskOutcome
from llm.chat import model_label
from nodes import NODE_FUNCTIONS

LATE_PROBLEMS = 103
"""HumanEval/103 on: the last 61 problems, where the first attempt was weakest (issue #14)."""

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N HumanEval problems")
    parser.add_argument(
        "--penalties", default="1.1,1.0", help="comma-separated; the first is the baseline"
    )
    add_run_options(parser, "repeat_penalty")
    return parser.parse_args(argv)


def arm_name(penalty: float) -> str:
    return f"penalty {penalty:g}"


def run_arms(run: ResumableRun, penalties: list[float], args: argparse.Namespace) -> str:
    """Every problem's greedy first attempt under each penalty; the model's label."""
    contexts = {
        arm_name(p): build_context(
            protocol_settings(
                args.llm, args.base_url, run.folder / f"penalty-{p:g}", llm_repeat_penalty=p
            ),
            use_memory=False,
        )
        for p in penalties
    }
    with run.checkpointer() as saver:
        graph = compile_mesh(NODE_FUNCTIONS, saver)
        arms = [Arm(name, BatchRunner(graph, c, name)) for name, c in contexts.items()]
        run_interleaved(run, humaneval_tasks(args.limit), arms, attempts=1)
    return model_label(next(iter(contexts.values())).settings)


def first_attempts(values: list[TaskOutcome], start: int = 0) -> list[bool]:
    return [o.first_attempt_passed for o in values if o.index >= start]


def report(run: ResumableRun, model: str, penalties: list[float]) -> dict[str, Any]:
    """The results payload from the stored rows (problems every arm finished)."""
    per_arm = {arm_name(p): outcomes(run, arm_name(p)) for p in penalties}
    n = min(len(v) for v in per_arm.values())
    per_arm = {arm: values[:n] for arm, values in per_arm.items()}
    base, *others = per_arm
    return {
        "benchmark": "repeat_penalty",
        "title": f"Greedy first attempt by repetition penalty, HumanEval, {model}",
        "problems": n,
        "arms": {
            arm: {
                "pass_at_1": rate(first_attempts(values)),
                "late_problems": rate(first_attempts(values, LATE_PROBLEMS)),
                "mean_tokens": round(sum(o.tokens for o in values) / n, 1) if n else 0.0,
                "rows": [o.model_dump() for o in values],
            }
            for arm, values in per_arm.items()
        },
        "differences": {
            f"{other} - {base}": {
                "all": paired_rates(first_attempts(per_arm[base]), first_attempts(per_arm[other])),
                "late_problems": paired_rates(
                    first_attempts(per_arm[base], LATE_PROBLEMS),
                    first_attempts(per_arm[other], LATE_PROBLEMS),
                ),
                "answers_differ": sum(
                    b.tokens != o.tokens for b, o in zip(per_arm[base], per_arm[other], strict=True)
                ),
            }
            for other in others
        },
        **run.record(),
    }


def chart(payload: dict[str, Any], path: Path) -> None:
    """Each penalty's pass@1, all problems and the late ones, with 95 % intervals."""
    arms = list(payload["arms"])
    with saved_figure(path, figsize=(7, 4.2)) as (_, ax):
        rate_bars(ax, arms, {
            "all problems": [payload["arms"][arm]["pass_at_1"] for arm in arms],
            f"HumanEval/{LATE_PROBLEMS}+": [payload["arms"][arm]["late_problems"] for arm in arms],
        })  # fmt: skip
        ax.set_ylabel("greedy first attempt, pass@1 (%)")
        ax.set_ylim(0, 100)
        lines = [f"{name}: {100 * d['all']['difference']:+.1f} points, McNemar p="
                 f"{d['all']['mcnemar_p']:.3f}" for name, d in payload["differences"].items()]  # fmt: skip
        ax.set_title(f"{payload['title']}\nn={payload['problems']}; " + "; ".join(lines),
                     fontsize=9)  # fmt: skip
        ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    penalties = [float(p) for p in args.penalties.split(",")]
    payload, path = measure(
        args,
        lambda run: run_arms(run, penalties, args),
        lambda run, model: report(run, model, penalties),
    )
    chart(payload, path.with_suffix(".png"))
    for arm, figures in payload["arms"].items():
        console.print(f"{arm}: pass@1 {figures['pass_at_1']}, late {figures['late_problems']}")
    for name, difference in payload["differences"].items():
        console.print(f"{name}: {difference['all']}")
    console.print(f"written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
