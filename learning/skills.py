"""Skills the optimizer learns from rewards, besides system prompts: short rules distilled from
the loop's repeated failures, and worked examples chosen from its rewarded solutions. Both are
versioned in the prompt registry (`consumer.rules`, `consumer.exemplars`), applied by the
consumer, and promoted only through the same validation gate as prompts.

A 0.5B model writes poor rules about its own mistakes, so a rule is chosen, not written: each
kind of failure the sandbox reports maps to one general rule, and the failures that recur on the
training tasks pick the rules. Exemplars come from training tasks only, never validation or test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from learning.rollouts import RolloutTrace
from nodes.code_extraction import prepare_solution

RULES: dict[str, str] = {
    "NameError": "Import every module and name you use (for example `from typing import List`, "
    "`import math`) at the top of the code block.",
    "SyntaxError": "Answer with one complete, syntactically valid function: close every "
    "bracket, string and block.",
    "IndentationError": "Indent the function body consistently with four spaces.",
    "Timeout": "Avoid unbounded loops and exponential recursion; use a linear or n log n "
    "algorithm.",
    "RecursionError": "Prefer loops to deep recursion.",
    "IndexError": "Guard every index: handle empty inputs and the first and last elements.",
    "KeyError": "Look keys up with `.get` or check membership before indexing a dict.",
    "ZeroDivisionError": "Check for zero before dividing.",
    "TypeError": "Return exactly the type the signature declares, and call functions with the "
    "argument types the task gives.",
    "AttributeError": "Call only methods that the value's type has; check for None first.",
    "ValueError": "Validate conversions (int(), float(), unpacking) before relying on them.",
    "AssertionError": "Re-read the statement and its examples, handle the edge cases it implies "
    "(empty inputs, boundaries, ties), and check your function on each example before answering.",
    "NonPlainValue": "Return plain built-in values (int, str, list, dict, ...), not custom "
    "objects.",
}
"""One general rule per kind of failure the sandbox reports."""

MIN_RECURRENCE = 2
"""A failure kind must recur on this many training runs to pick its rule."""
MAX_RULES = 4
MAX_EXEMPLARS = 2
MAX_EXEMPLAR_LINES = 15


def distill_rules(traces: Sequence[RolloutTrace]) -> str:
    """The rules for the failure kinds that recur in `traces` (most frequent first), one per
    line; empty when nothing recurs."""
    kinds: Counter[str] = Counter()
    for trace in traces:
        seen: set[str] = set()
        for span in trace.spans:
            listed = str(span.attributes.get("aimesh.sandbox.error_types", ""))
            seen.update(kind for kind in listed.split(",") if kind in RULES)
        kinds.update(seen)
    chosen = [kind for kind, count in kinds.most_common() if count >= MIN_RECURRENCE]
    return "\n".join(f"- {RULES[kind]}" for kind in chosen[:MAX_RULES])


def choose_exemplars(traces: Sequence[RolloutTrace], min_reward: float = 0.9) -> str:
    """Up to MAX_EXEMPLARS short solutions from rewarded runs of distinct training tasks, as a
    task line and its code; empty when none qualifies."""
    picked: dict[str, str] = {}
    for trace in sorted(traces, key=lambda t: -(t.reward or 0.0)):
        task = trace.task
        if task is None or (trace.reward or 0.0) < min_reward or task.task_id in picked:
            continue
        answer = _last_consumer_answer(trace)
        if not answer:
            continue
        code = prepare_solution(answer, task.entry_point)
        if not code or code.count("\n") >= MAX_EXEMPLAR_LINES:
            continue
        first_line = task.statement.strip().splitlines()[0]
        picked[task.task_id] = f"Task: {first_line}\n```python\n{code}\n```"
        if len(picked) == MAX_EXEMPLARS:
            break
    return "\n\n".join(picked.values())


def _last_consumer_answer(trace: RolloutTrace) -> str:
    """The completion of the consumer's last LLM call in the run (the call just before its
    last consumer step)."""
    answer = ""
    pending = ""
    for span in trace.spans:
        if span.kind == "llm":
            pending = str(span.attributes.get("gen_ai.completion.0.content", ""))
        elif span.kind == "node":
            if span.name == "node.consumer" and pending:
                answer = pending
            pending = ""
    return answer
