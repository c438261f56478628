"""The protocol's figures on every problem for a loop that changed on some of them only, from two
reports: the rows of UPDATE (a later run of the problems the change touches) replace BASE's rows
of the same problems. Each problem's columns come from one run, so the paired tests stay paired;
a column that only one run measured is left out. Nothing is run.

    .venv/bin/python -m benchmarks.protocol_composite BASE UPDATE [--name NAME]

Writes benchmarks/results/NAME.json (default protocol_composite).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from app.eval_protocol import ProblemRow
from app.eval_report import print_report, report
from benchmarks.common import RESULTS_DIR

OPTIONAL_COLUMNS = ("oracle", "completion", "codet")
"""The columns a run may leave out (`ProblemRow` fields of the same name)."""

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="a protocol report of every problem")
    parser.add_argument("update", type=Path, help="a later report of some of them")
    parser.add_argument("--name", default="protocol_composite", help="the result's file name")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def composite_rows(base: dict[str, Any], update: dict[str, Any]) -> list[ProblemRow]:
    """BASE's rows in its order, those UPDATE ran again replaced by UPDATE's (and UPDATE's other
    problems after them), re-indexed; only the columns every row has."""
    newer = {r["task_id"]: ProblemRow.model_validate(r) for r in update["rows"]}
    rows = [newer.pop(r["task_id"]) if r["task_id"] in newer else ProblemRow.model_validate(r)
            for r in base["rows"]]  # fmt: skip
    rows += newer.values()
    missing = {
        key: None
        for key in OPTIONAL_COLUMNS
        if any(getattr(row, key) is None for row in rows)
    }  # fmt: skip
    return [row.model_copy(update={**missing, "index": i}) for i, row in enumerate(rows)]


def composite(base_path: Path, update_path: Path) -> dict[str, Any]:
    """The report of the composite rows, naming both runs and which problems each gave."""
    base, update = (json.loads(p.read_text()) for p in (base_path, update_path))
    if base.get("model") != update.get("model"):
        raise SystemExit(
            f"{base_path} ran {base.get('model')}, {update_path} ran {update.get('model')}: "
            "a composite needs one model"
        )
    k = {payload.get("options", {}).get("k") for payload in (base, update)}
    if len(k) != 1:
        raise SystemExit(f"the reports drew different numbers of candidates (K = {sorted(k)})")
    replaced = {r["task_id"] for r in update["rows"]}

    def source(path: Path, payload: dict[str, Any], problems: int) -> dict[str, Any]:
        keys = ("eval_id", "commit", "options", "settings", "segments")
        return {"report": str(path), "problems": problems, **{k: payload.get(k) for k in keys}}

    kept = sum(r["task_id"] not in replaced for r in base["rows"])
    header = {
        "benchmark": "protocol_composite",
        "model": base.get("model"),
        "options": {"k": k.pop()},
        "composite": {
            "rule": "each problem's row from one run: UPDATE's where it ran it, else BASE's",
            "base": source(base_path, base, kept),
            "update": source(update_path, update, len(replaced)),
        },
    }
    return report(composite_rows(base, update), header)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    payload = composite(args.base, args.update)
    path = args.results_dir / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print_report(console, payload, payload["options"]["k"])
    console.print(f"goals: {payload['goals']}")
    console.print(f"written {path}")
    return payload


if __name__ == "__main__":
    main()
