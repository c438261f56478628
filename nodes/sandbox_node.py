"""Sandbox node: runs the attempts not judged yet against the task's tests and attaches the results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import Attempt, MeshState, Task
from sandbox import ExecutionResult, SandboxJob

if TYPE_CHECKING:
    from memory import AgentMemory


def execute(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
    """Run each attempt not judged yet (the last one; all K when the consumer drew them at once)
    in the sandbox; the results replace those attempts in the state."""
    context = runtime.context
    task = state.task
    pending = [a for a in state.attempts if a.execution is None]
    if not pending or task is None:
        raise ValueError("sandbox node needs a task and an attempt")
    with ThreadPoolExecutor(max_workers=len(pending)) as pool:
        judged = list(pool.map(lambda a: _judge(context, state, task, a), pending))
    if context.memory is not None:
        for attempt in judged:
            _remember(context.memory, state, attempt)
    return {"attempts": judged, "status": "tested"}


def _judge(context: MeshContext, state: MeshState, task: Task, attempt: Attempt) -> Attempt:
    """One attempt with its verdict, its public run and the model-written tests it passed."""

    def run(tests: list[str]) -> ExecutionResult:
        return context.sandbox.run(
            SandboxJob(
                code=attempt.code,
                tests=tests,
                setup=task.setup,
                entry_point=task.entry_point,
                timeout_s=context.settings.sandbox_timeout_s,
                memory_mb=context.settings.sandbox_memory_mb,
            )
        )

    # hidden tests run in a sandbox of their own: a public run never holds them
    hidden = bool(task.hidden_tests)
    verdict = run(task.verdict_tests)
    # with public feedback and no public tests, an empty public run still says if the code loads
    wanted = bool(task.tests) or state.feedback == "public"
    public = run(task.tests) if hidden and wanted else None
    written = run(state.written_tests).passed_indexes() if state.written_tests else None
    return attempt.model_copy(
        update={"execution": verdict, "hidden": hidden, "public": public, "written_passed": written}
    )


def _remember(memory: AgentMemory, state: MeshState, attempt: Attempt) -> None:
    """Store a failure; when a failed attempt is followed by a pass, store the fix recipe.
    What is stored is what a retry may see (no hidden test's input or value)."""
    task, result = state.task, attempt.execution
    assert task is not None and result is not None
    if not result.passed:
        memory.record_failure(
            task.statement, attempt.feedback(state.feedback), task_id=task.task_id
        )
        return
    failed = [a for a in state.attempts[:-1] if a.execution is not None and not a.execution.passed]
    if failed and failed[-1].execution is not None:
        memory.record_fix_recipe(
            task.statement,
            failed[-1].feedback(state.feedback),
            failed[-1].code,
            attempt.code,
            task_id=task.task_id,
        )
