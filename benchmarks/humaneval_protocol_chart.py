"""Chart of an `aimesh eval` protocol report: each column's pass rate with its Wilson 95 %
interval, and the answers each loop solved with, by attempt.

    .venv/bin/python -m benchmarks.humaneval_protocol_chart REPORT [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import saved_figure

SHORT = {
    "greedy": "(a) greedy\nfirst attempt",
    "blind": "(b) blind\nbest-of-K",
    "blind_any": "(b') pass@K\nupper bound",
    "loop": "(c) loop,\npublic feedback",
    "oracle": "(d) ORACLE\nfeedback",
    "completion": "(e) greedy,\nmodel-card prompt",
    "codet": "(f) best-of-K,\nmodel-written tests",
}
ORACLE = {"blind_any", "oracle"}
"""Columns that use the hidden tests: drawn hatched, never to be read as pass@1."""


def loops_drawn(columns: dict[str, Any]) -> list[tuple[str, str]]:
    """The loops given solved-at-attempt bars: (c), and (d) where the report has that column."""
    loops = [("loop", "(c) public feedback")]
    return [*loops, ("oracle", "(d) oracle feedback")] if "oracle" in columns else loops


def protocol_chart(report: dict[str, Any], out: Path) -> None:
    """Columns with intervals (left), solved-at-attempt bars of the two loops (right)."""
    columns = report["columns"]
    keys = [k for k in SHORT if k in columns]
    k = report["options"]["k"]
    with saved_figure(out, figsize=(11, 4.4), ncols=2) as (fig, axes):
        left, right = axes
        rates = [100 * columns[key]["rate"] for key in keys]
        low = [rates[i] - 100 * columns[key]["ci95"][0] for i, key in enumerate(keys)]
        high = [100 * columns[key]["ci95"][1] - rates[i] for i, key in enumerate(keys)]
        bars = left.bar(
            range(len(keys)),
            rates,
            yerr=[low, high],
            capsize=4,
            color=["#bbbbbb" if key in ORACLE else "#4c72b0" for key in keys],
            hatch=None,
        )
        for bar, key in zip(bars, keys, strict=True):
            if key in ORACLE:
                bar.set_hatch("//")
            n = columns[key]["n"]
            left.annotate(
                f"{100 * columns[key]['rate']:.1f}\nn={n}",
                (bar.get_x() + bar.get_width() / 2, 2),
                ha="center",
                fontsize=7,
                color="white" if key not in ORACLE else "black",
            )
        left.set_xticks(range(len(keys)), [SHORT[key] for key in keys], fontsize=7)
        left.set_ylabel("hidden tests passed (%), 95 % Wilson interval")
        left.set_ylim(0, 100)
        left.set_title(
            f"HumanEval, {report['model']}, K={k}, {report['problems']} problems", fontsize=9
        )
        left.grid(axis="y", alpha=0.3)
        solved = report["solved_at_attempt"]
        loops = loops_drawn(columns)
        width = 0.76 / len(loops)
        for shift, (key, label) in enumerate(loops):
            counts = [solved.get(key, {}).get(str(a), 0) for a in range(1, k + 1)]
            xs = [a + (shift - (len(loops) - 1) / 2) * width for a in range(1, k + 1)]
            right.bar(xs, counts, width, label=label, hatch="//" if key == "oracle" else None)
            for x, c in zip(xs, counts, strict=True):
                right.annotate(str(c), (x, c), ha="center", va="bottom", fontsize=8)
        right.yaxis.get_major_locator().set_params(integer=True)
        right.set_xticks(range(1, k + 1))
        right.set_xlabel("attempt whose answer was submitted and passed")
        right.set_ylabel("problems solved")
        title = "solved at attempt"
        if "oracle" in columns:
            title += f" ((d) on the first {columns['oracle']['n']} problems)"
        right.set_title(title, fontsize=9)
        right.legend(fontsize=8)
        right.grid(axis="y", alpha=0.3)
        fig.tight_layout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="an `aimesh eval --json` report")
    parser.add_argument("--out", type=Path, default=None, help="default: the report's .png")
    args = parser.parse_args()
    out = args.out or args.report.with_suffix(".png")
    protocol_chart(json.loads(args.report.read_text()), out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
