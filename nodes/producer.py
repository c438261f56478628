"""Producer: invents a task of rising difficulty and only emits it once its tests pass its own
reference solution in the sandbox. A task supplied in the input (a dataset) is validated the same
way when it carries a reference solution."""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import MeshState, Task
from llm.chat import ask
from nodes import prompts
from nodes.task_grounding import (
    TaskRejected,
    apply_probes,
    keep_passing,
    probes,
    read_probes,
)
from nodes.task_parsing import TaskParseError, parse_task
from sandbox import ExecutionResult, SandboxJob


def target_difficulty(task_index: int) -> int:
    """Difficulty rises by one every two tasks, from 1 to 10."""
    return min(10, 1 + task_index // 2)


def validate_task(context: MeshContext, task: Task) -> ExecutionResult:
    """Run the task's tests against its own reference solution."""
    return context.sandbox.run(
        SandboxJob(
            code=task.reference_solution or "",
            tests=task.all_tests,
            setup=task.setup,
            entry_point=task.entry_point,
            timeout_s=context.settings.sandbox_timeout_s,
            memory_mb=context.settings.sandbox_memory_mb,
        )
    )


def grounded(context: MeshContext, task: Task) -> Task:
    """The task with its tests grounded in its reference solution (see nodes.task_grounding).
    Raises TaskRejected when nothing usable is left."""
    found = probes(task)
    if found:
        snippets = [probe.snippet() for probe in found]
        probed = validate_task(context, task.model_copy(update={"tests": snippets}))
        task = apply_probes(task, found, read_probes(probed.stdout))
    return keep_passing(task, validate_task(context, task))


def accepted(context: MeshContext, task: Task) -> Task:
    """The task as the producer emits it: grounded (the default) or, with grounding off, as
    written if it passes its own tests; its tests split into public and hidden ones. Raises
    TaskRejected otherwise."""
    if context.settings.producer_ground_tests:
        return with_hidden_tests(grounded(context, task))
    result = validate_task(context, task)
    if not result.passed:
        raise TaskRejected(f"the reference solution fails the tests:\n{result.feedback()}")
    return with_hidden_tests(task)


def checked_supplied(context: MeshContext, task: Task) -> Task:
    """A supplied task whose reference passes its verdict tests. Public examples that the
    reference contradicts are dropped: a dataset's docstring can be wrong (HumanEval/47)."""
    result = validate_task(context, task)
    if result.passed:
        return task
    failing = {failure.test for failure in result.failures}
    if task.hidden_tests and result.error_type is None and not failing & set(task.hidden_tests):
        return task.model_copy(update={"tests": [t for t in task.tests if t not in failing]})
    raise TaskRejected(f"supplied task fails its own tests: {result.feedback()}")


def with_hidden_tests(task: Task) -> Task:
    """The task with every other test hidden (the 2nd, 4th, ...), the rest public: the verdict
    then checks that a solution generalises beyond the tests a retry has seen. Interleaving
    keeps the kinds of case a model writes in order (typical first, edge cases last) in both."""
    return task.model_copy(update={"tests": task.tests[::2], "hidden_tests": task.tests[1::2]})


def producer(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
    """Produce (or validate) the task for this run."""
    context = runtime.context
    # Pin the generated defaults: fields absent from the run's input are otherwise re-created
    # (a new run id) each time a node reads the state.
    started = {"run_id": state.run_id, "started_at": state.started_at or time.time()}
    prompt = prompts.current(context, prompts.PRODUCER_SYSTEM)
    versions = {prompt.name: prompt.version}
    if state.task is not None:
        if not state.task.reference_solution:
            return {**started, "status": "solving", "prompt_versions": versions}
        try:
            task = checked_supplied(context, state.task)
        except TaskRejected as exc:
            return {**started, "status": "failed", "prompt_versions": versions, "error": str(exc)}
        return {**started, "task": task, "status": "solving", "prompt_versions": versions}
    return {**started, **_invent_task(context, state), "prompt_versions": versions}


def steering(
    context: MeshContext, task_index: int
) -> tuple[int, list[tuple[str, int]] | None, int]:
    """Difficulty, covered categories (None without memory) and memory hits for a new task.

    Difficulty rises with the batch position and, with memory, with all tasks produced before.
    """
    difficulty = target_difficulty(task_index)
    if context.memory is None:
        return difficulty, None, 0
    coverage = context.memory.coverage()
    produced = sum(count for _, count, _ in coverage)
    covered = sorted(((c, n) for c, n, _ in coverage), key=lambda row: -row[1])
    return min(10, max(difficulty, target_difficulty(produced))), covered, len(coverage)


def _invent_task(context: MeshContext, state: MeshState) -> dict[str, Any]:
    difficulty, covered, hits = steering(context, state.task_index)
    messages: list[BaseMessage] = [
        SystemMessage(prompts.current(context, prompts.PRODUCER_SYSTEM).text),
        HumanMessage(prompts.producer_request(state.task_index, difficulty, covered)),
    ]
    tokens = 0
    error = "no attempt made"
    for _ in range(context.settings.producer_max_tries):
        reply = ask(context.llm, messages)
        tokens += reply.tokens
        try:
            # The task id derives from the run id, so a redelivered request yields the same id.
            task = accepted(
                context, parse_task(reply.text, difficulty=difficulty, task_id=state.run_id)
            )
        except (TaskParseError, TaskRejected) as exc:
            error = str(exc)
        else:
            if context.memory is not None:
                context.memory.record_task(
                    task.task_id, task.category, task.difficulty, task.statement
                )
            return {"task": task, "status": "solving", "tokens_used": tokens, "memory_hits": hits}
        messages += [AIMessage(reply.text), HumanMessage(prompts.producer_retry(error))]
    return {
        "status": "failed",
        "tokens_used": tokens,
        "memory_hits": hits,
        "error": f"producer gave up after {context.settings.producer_max_tries} tries: {error}",
    }
