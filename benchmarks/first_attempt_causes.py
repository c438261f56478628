"""Where the greedy first attempt loses, per cause, from a protocol report's stored replies (no
model call): answers cut off by the token limit, what other code extractions of the same reply
would have passed, the hidden tests' error types, and the prompt shape (column e against a).

    .venv/bin/python -m benchmarks.first_attempt_causes REPORT [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from foundation.settings import Settings
from graph.datasets import humaneval_tasks
from graph.state import Task
from nodes.code_extraction import context_preamble, extract_code, prepare_solution
from sandbox import ExecutionResult, Sandbox, SandboxJob, make_sandbox

_FENCES = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def truncated(reply: str) -> bool:
    """An answer whose code block never closes (the token limit cut it off)."""
    return reply.count("```") % 2 == 1


def alternatives(reply: str, task: Task) -> dict[str, str]:
    """Other readings of the same reply: the block without dropping its top-level calls, and
    every block joined (helpers written in a block of their own)."""
    block = extract_code(reply, task.entry_point)
    joined = "\n\n".join(b.strip() for b in _FENCES.findall(reply)) or block
    out = {}
    for name, code in (("unstripped", block), ("all_blocks", joined)):
        preamble = context_preamble(task.statement, code, task.entry_point)
        out[name] = f"{preamble}\n\n{code}".strip() if preamble else code
    return out


def hidden(sandbox: Sandbox, task: Task, code: str) -> ExecutionResult:
    return sandbox.run(
        SandboxJob(
            code=code,
            tests=task.verdict_tests,
            setup=task.setup,
            entry_point=task.entry_point,
            timeout_s=10,
            memory_mb=512,
        )
    )


def causes(report: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    """Counts per cause over the report's rows."""
    tasks = {t.task_id: t for t in humaneval_tasks()}
    rows = [r for r in report["rows"] if not r.get("error")]
    errors: Counter[str] = Counter()
    rescued: Counter[str] = Counter()
    cut = cut_failed = 0
    for row in rows:
        task, reply = tasks[row["task_id"]], row.get("greedy_reply", "")
        if truncated(reply):
            cut += 1
            cut_failed += not row["greedy"]
        if row["greedy"]:
            continue
        ours = row["greedy_code"]
        if reply:
            ours = prepare_solution(reply, task.entry_point, context_source=task.statement)
        result = hidden(sandbox, task, ours)
        kinds = {f.error_type for f in result.failures} or {result.error_type or "?"}
        errors.update(kinds)
        for name, code in alternatives(reply, task).items() if reply else ():
            if code != ours and hidden(sandbox, task, code).passed:
                rescued[name] += 1
    shape = [(r["greedy"], r["completion"]) for r in rows if r.get("completion") is not None]
    return {
        "problems": len(rows),
        "greedy_failures": sum(not r["greedy"] for r in rows),
        "truncated_replies": cut,
        "truncated_and_failed": cut_failed,
        "failures_by_hidden_error_type": dict(errors.most_common()),
        "failures_another_extraction_would_pass": dict(rescued),
        "prompt_shape": {
            "restated_only": sum(a and not e for a, e in shape),
            "model_card_only": sum(e and not a for a, e in shape),
            "both": sum(a and e for a, e in shape),
            "neither": sum(not a and not e for a, e in shape),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings.load()
    sandbox = make_sandbox(
        settings.sandbox,
        timeout_s=settings.sandbox_timeout_s,
        memory_mb=settings.sandbox_memory_mb,
        allow_unisolated=settings.sandbox_allow_unisolated,
    )
    found = causes(json.loads(args.report.read_text()), sandbox)
    text = json.dumps({"report": str(args.report), **found}, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
