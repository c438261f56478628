"""Every prompt the agents use, versioned by name. A version is never edited: add a new one."""

from __future__ import annotations

from dataclasses import dataclass

from graph.context import MeshContext
from prompt_registry import Prompt, adapter_prompt, system_prompt

PRODUCER_SYSTEM = system_prompt("producer")
CONSUMER_SYSTEM = system_prompt("consumer")
REVIEWER_SYSTEM = system_prompt("reviewer")

_SEED_PROMPTS: tuple[Prompt, ...] = (
    Prompt(
        PRODUCER_SYSTEM,
        "v2",
        "You invent self-contained Python programming tasks for a code-generation agent.\n"
        "Answer in exactly two parts and nothing else.\n"
        "Part 1, a ```json block with ONE object with these keys:\n"
        '  "statement": what the function must do, with edge cases (plain English),\n'
        '  "signature": the def line of the function with type hints, without the body,\n'
        '  "entry_point": the function name alone,\n'
        '  "tests": a list of 4 to 8 strings, each ONE assert statement calling the function,\n'
        '  "category": a short topic such as strings, math, lists, dicts, parsing, recursion,\n'
        '  "difficulty": an integer 1..10.\n'
        "Part 2, a ```python block with the reference solution: the complete, correct function,\n"
        "normally indented.\n"
        "Use only the standard library. The reference solution must pass every test.",
    ),
    Prompt(
        CONSUMER_SYSTEM,
        "v1",
        "You are an expert Python programmer. Write a correct, efficient, readable solution.\n"
        "Answer with a single ```python code block containing the complete function (with any\n"
        "imports it needs) and nothing else: no explanations, no example calls, no tests.",
    ),
    Prompt(
        REVIEWER_SYSTEM,
        "v1",
        "You are a strict code reviewer. Given a task, a solution and measured findings, write a\n"
        "critique of at most three sentences: what is good, what is wrong, what to improve.",
    ),
)

CONSUMER_RULES = "consumer.rules"
"""A skill: short rules distilled from the loop's repeated failures (empty: none yet)."""
CONSUMER_EXEMPLARS = "consumer.exemplars"
"""A skill: worked examples chosen from rewarded solutions of training tasks (empty: none yet)."""
SKILLS = (CONSUMER_RULES, CONSUMER_EXEMPLARS)
CONSUMER_ADAPTER = adapter_prompt("consumer")
"""A skill in the weights: the name of the LoRA adapter the consumer's solutions are decoded
with (one the model server loaded), learned from verified rollouts; empty: the base model."""

SEED_PROMPTS: dict[str, Prompt] = {
    **{p.name: p for p in _SEED_PROMPTS},
    **{name: Prompt(name, "v0", "") for name in (*SKILLS, CONSUMER_ADAPTER)},
}


TASK_CATEGORIES: tuple[str, ...] = (
    "strings",
    "math",
    "lists",
    "dicts",
    "sorting",
    "searching",
    "recursion",
    "parsing",
    "number theory",
    "matrices",
    "dynamic programming",
    "graphs",
    "bit manipulation",
    "geometry",
    "text formatting",
    "validation",
    "stacks and queues",
    "simulation",
    "dates and times",
    "sets",
)
"""The categories the producer is steered through when memory tells it what is covered."""

SHOWN_CATEGORIES = 12
"""How many covered categories (the most covered first) a producer request lists."""


def producer_request(
    task_index: int, difficulty: int, covered: list[tuple[str, int]] | None
) -> str:
    """The producer's user message for one new task. `covered` is what memory knows, as
    (category, tasks so far), most covered first; None without memory. With memory the request
    names the most covered categories and asks for one of the least covered (a small model follows
    one named category; it ignored a choice of three)."""
    request = f"Create task #{task_index + 1} at difficulty {difficulty} (1 = trivial, 10 = hard)."
    if covered is None:
        return request
    shown = covered[:SHOWN_CATEGORIES]
    done = ", ".join(f"{category} ({count})" for category, count in shown) or "none yet"
    target = next_category(covered, task_index)
    return (
        f"{request[:-1]}, in the category {target!r}: a {target} problem, with "
        f'"category": "{target}".\nCategories already covered, with task counts: {done}.'
    )


def next_category(covered: list[tuple[str, int]], task_index: int) -> str:
    """The category to ask for: among the least covered of TASK_CATEGORIES, the one at the task's
    position, so a category the model keeps failing at does not hold up the others."""
    counts = dict(covered)
    fewest = min(counts.get(category, 0) for category in TASK_CATEGORIES)
    rarest = [category for category in TASK_CATEGORIES if counts.get(category, 0) == fewest]
    return rarest[task_index % len(rarest)]


def producer_retry(error: str) -> str:
    """The producer's follow-up when its own reference failed its tests or the JSON was invalid."""
    return (
        f"That task was rejected: {error}\nAnswer again in the same two parts: the ```json "
        "block, then the reference solution in a ```python block."
    )


def consumer_request(statement: str, signature: str, entry_point: str, experience: str = "") -> str:
    """The consumer's user message for a task, after what memory recalled for similar tasks (the
    task comes last: a small model otherwise continues the recalled code of another task)."""
    request = f"Task:\n{statement}\n\nImplement `{entry_point}` with this signature:\n{signature}\n"
    if not experience:
        return request
    notes = "From experience (notes from other, similar tasks; do not copy their code):"
    return f"{notes}\n{experience}\n\n{request}"


def consumer_completion(statement: str) -> str:
    """The request in the shape of the model card's harness (EvalPlus's instruction to a chat
    model): the function's header and docstring, to be completed; no system prompt of ours."""
    return (
        "Please provide a self-contained Python script that solves the following problem in a "
        f"markdown code block:\n```python\n{statement.strip()}\n```\n"
    )


def tests_request(statement: str, signature: str, entry_point: str, count: int) -> str:
    """The request for tests of the task's function (CodeT's test generation), built only from
    what the consumer's request shows (statement, signature): never from the task's tests."""
    return (
        f"Task:\n{statement}\n\nThe function `{entry_point}` has this signature:\n{signature}\n\n"
        f"Do not implement it. Write {count} different test cases for `{entry_point}`: each ONE "
        "line `assert ...` that calls it with concrete arguments and compares the result with the "
        "exact expected value. Answer with a single ```python block of assert lines and nothing "
        "else."
    )


def consumer_retry(feedback: str) -> str:
    """Feedback to the consumer after a failed attempt (its code is the turn before)."""
    return (
        f"Your previous attempt failed in the sandbox:\n{feedback}\n\n"
        "Find the bug and fix it; do not repeat the same code. Answer with the complete "
        "corrected function in one ```python block."
    )


def consumer_resample(feedback: str) -> str:
    """Added to the task request on a `resample` retry: what failed, without the failed code."""
    return (
        f"A previous attempt failed in the sandbox:\n{feedback}\n\n"
        "Write a new solution from scratch, thinking again about what the task asks."
    )


def reviewer_request(statement: str, code: str, findings: list[str]) -> str:
    """The reviewer's user message."""
    listed = "\n".join(f"- {f}" for f in findings) or "- none"
    return f"Task:\n{statement}\n\nSolution:\n```python\n{code}\n```\n\nFindings:\n{listed}\n"


def current(context: MeshContext, name: str) -> Prompt:
    """The version of prompt `name` this run uses: fixed in the context, else the registry's
    active one (read at each call, so a promotion reaches the next run), else the seed."""
    return context.prompt(name, SEED_PROMPTS)


@dataclass(frozen=True)
class ConsumerSetup:
    """What the consumer's solutions are asked with, read once per step: the system text, the
    LoRA adapter that decodes them ("" for the base model) and the version of each part."""

    system: str
    adapter: str
    versions: dict[str, str]


def consumer_system(context: MeshContext) -> ConsumerSetup:
    """The consumer's system text: its prompt, then the skills learned so far (rules, worked
    examples); its adapter; and the version of each part, for the run's record."""
    parts = [current(context, name) for name in (CONSUMER_SYSTEM, *SKILLS, CONSUMER_ADAPTER)]
    system, rules, exemplars, adapter = parts
    text = system.text
    if rules.text.strip():
        text += f"\n\nRules learned from earlier mistakes:\n{rules.text.strip()}"
    if exemplars.text.strip():
        text += f"\n\nExamples of solutions that were judged correct:\n{exemplars.text.strip()}"
    return ConsumerSetup(text, adapter.text.strip(), {part.name: part.version for part in parts})
