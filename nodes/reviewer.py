"""Reviewer: a reward in 0..1 from correctness, efficiency, readability and adherence, plus a
written critique (by the LLM when enabled, else composed from the findings)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import MeshState, Review, ReviewScores
from llm.chat import ask
from nodes import prompts
from nodes.code_quality import lint_findings, signature_adherence

WEIGHTS = ReviewScores(correctness=0.6, efficiency=0.15, readability=0.1, adherence=0.15)
"""How much each component weighs in the reward (sums to 1)."""

LINT_PENALTY = 0.1
"""Readability lost per lint finding."""

PRAISE_THRESHOLD = 0.9
"""Rewards at or above this store the solution and critique as a best practice."""


def score(state: MeshState, timeout_s: float) -> tuple[ReviewScores, list[str]]:
    """The four component scores of the submitted answer, and the findings behind them."""
    attempt, task = state.submitted, state.task
    if attempt is None or task is None or attempt.execution is None:
        return ReviewScores(), ["nothing was executed"]
    result = attempt.execution
    findings: list[str] = []
    correctness = result.tests_passed / result.tests_total if result.tests_total else 0.0
    if not result.passed:
        findings.append(f"{result.tests_passed}/{result.tests_total} tests passed")
    # Full marks up to 10% of the time budget, then linearly down to 0 at the budget.
    used = result.duration_s / timeout_s if timeout_s else 0.0
    efficiency = 0.0 if result.timed_out else max(0.0, min(1.0, (1.0 - used) / 0.9))
    if result.timed_out:
        findings.append("timed out")
    lint = lint_findings(attempt.code)
    findings += [f"lint: {f}" for f in lint]
    readability = max(0.0, 1.0 - LINT_PENALTY * len(lint))
    adherence, problem = signature_adherence(attempt.code, task.signature, task.entry_point)
    if problem:
        findings.append(f"adherence: {problem}")
    scores = ReviewScores(
        correctness=correctness, efficiency=efficiency, readability=readability, adherence=adherence
    )
    return scores, findings


def reward(scores: ReviewScores) -> float:
    """The weighted reward. Quality counts only for correct code: code that fails any test
    scores just its correctness share (at most 0.6)."""
    if scores.correctness < 1.0:
        return round(WEIGHTS.correctness * scores.correctness, 4)
    total = sum(getattr(scores, k) * getattr(WEIGHTS, k) for k in ReviewScores.model_fields)
    return round(min(1.0, max(0.0, total)), 4)


def review(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
    """Score the submitted answer and write the critique."""
    context = runtime.context
    scores, findings = score(state, context.settings.sandbox_timeout_s)
    critique, tokens = _critique(state, scores, findings, context)
    system = prompts.current(context, prompts.REVIEWER_SYSTEM)
    verdict = Review(reward=reward(scores), scores=scores, critique=critique, findings=findings)
    attempt, task = state.submitted, state.task
    memory = context.memory
    if memory and attempt and task and verdict.reward >= PRAISE_THRESHOLD:
        memory.record_best_practice(
            task.statement, critique, attempt.code, task_id=task.task_id, reward=verdict.reward
        )
    return {
        "review": verdict,
        "tokens_used": tokens,
        "status": "reviewed",
        "prompt_versions": {system.name: system.version},
    }


def _critique(
    state: MeshState, scores: ReviewScores, findings: list[str], context: MeshContext
) -> tuple[str, int]:
    attempt, task = state.submitted, state.task
    if context.settings.review_with_llm and attempt is not None and task is not None:
        reply = ask(
            context.llm,
            [
                SystemMessage(prompts.current(context, prompts.REVIEWER_SYSTEM).text),
                HumanMessage(prompts.reviewer_request(task.statement, attempt.code, findings)),
            ],
        )
        if reply.text.strip():
            return reply.text.strip(), reply.tokens
    return _template_critique(scores, findings), 0


def _template_critique(scores: ReviewScores, findings: list[str]) -> str:
    verdict = "Correct" if scores.correctness == 1.0 else "Incorrect"
    detail = "; ".join(findings[:4]) if findings else "no findings"
    return (
        f"{verdict} (correctness {scores.correctness:.2f}, efficiency {scores.efficiency:.2f}, "
        f"readability {scores.readability:.2f}, adherence {scores.adherence:.2f}): {detail}."
    )
