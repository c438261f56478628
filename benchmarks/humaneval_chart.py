"""Chart of `aimesh eval` reports: pass@1 by attempt budget, next to the model's published figure.

    .venv/bin/python -m benchmarks.humaneval_chart REPORT [REPORT ...] [--out PATH]

For each report, the share of problems solved within 1, 2, ... K attempts (the first point is the
single-attempt pass@1, the last the loop's), read from its per-problem rows. With ``--shared``
every report is cut to the problems all of them ran, so that runs of different lengths compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.humaneval import EvalSummary
from benchmarks.common import saved_figure
from graph.state import TaskOutcome

PUBLISHED = {"qwen2.5-coder-0.5b-instruct": 61.6, "qwen2.5-coder-1.5b-instruct": 70.7}
"""Single-shot HumanEval pass@1 (%) from the Qwen2.5-Coder technical report."""


def solved_within(outcomes: list[TaskOutcome], attempts: int) -> list[float]:
    """Percent of problems solved within 1..attempts attempts."""
    n = len(outcomes) or 1
    return [
        100 * sum(o.passed and o.attempts <= k for o in outcomes) / n
        for k in range(1, attempts + 1)
    ]


def load(report: Path) -> tuple[EvalSummary, list[TaskOutcome]]:
    """An `aimesh eval --json` report's summary and per-problem rows."""
    payload = json.loads(report.read_text())
    problems = [TaskOutcome.model_validate(p) for p in payload["problems"]]
    return EvalSummary.model_validate(payload["summary"]), problems


def shared_problems(
    runs: list[tuple[EvalSummary, list[TaskOutcome]]],
) -> list[tuple[EvalSummary, list[TaskOutcome]]]:
    """Each run cut to the problems every run has."""
    common = set.intersection(*({o.task_id for o in outcomes} for _, outcomes in runs))
    cut = []
    for summary, outcomes in runs:
        kept = [o for o in outcomes if o.task_id in common]
        cut.append((summary.model_copy(update={"problems": len(kept)}), kept))
    return cut


def chart(reports: list[Path], out: Path, *, shared: bool = False) -> None:
    """Draw one line per report and the model's published single-shot figure."""

    runs = [load(report) for report in reports]
    if shared:
        runs = shared_problems(runs)
    curves = [solved_within(outcomes, summary.attempts) for summary, outcomes in runs]
    model = runs[0][0].model
    values = [v for curve in curves for v in curve] + [PUBLISHED.get(model, 50.0)]
    with saved_figure(out, figsize=(7, 4.2)) as (_, ax):
        for (summary, _), curve in zip(runs, curves, strict=True):
            memory = ", memory" if summary.memory else ""
            label = f"{summary.retry_strategy} retries, {summary.problems} problems{memory}"
            ax.plot(range(1, len(curve) + 1), curve, "o-", label=label)
            for k, value in enumerate(curve, start=1):
                ax.annotate(f"{value:.1f}", (k, value), textcoords="offset points", xytext=(0, 6))
        if model in PUBLISHED:
            ax.axhline(
                PUBLISHED[model], color="grey", linestyle="--", label="published single-shot"
            )
        ax.set_title(f"HumanEval pass@1 by attempt budget, {model}", fontsize=10)
        ax.set_xlabel("attempts allowed (1 = single attempt)")
        ax.set_ylabel("problems solved (%)")
        ax.set_ylim(max(0, min(values) - 10), min(100, max(values) + 8))
        ax.set_xticks(range(1, 1 + max(summary.attempts for summary, _ in runs)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="`aimesh eval --json` reports")
    parser.add_argument("--out", type=Path, default=None, help="default: first report's .png")
    parser.add_argument("--shared", action="store_true", help="only the problems all reports ran")
    args = parser.parse_args()
    out = args.out or args.reports[0].with_suffix(".png")
    chart(args.reports, out, shared=args.shared)
    print(f"written {out}")


if __name__ == "__main__":
    main()
