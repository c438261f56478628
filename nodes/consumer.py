"""Consumer: writes the solution; a retry sees the sandbox's verdict and, with the `repair`
strategy, its previous code as a conversation (`resample` starts afresh without it). Where a
task has no public test under `public` feedback, it first writes tests of its own (CodeT) and
every retry is a blind sample for them to choose from."""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime

from graph.context import MeshContext
from graph.state import Attempt, MeshState, Task
from llm.chat import ask, request_extras, resolve_provider
from nodes import prompts
from nodes.code_extraction import assert_calls, prepare_solution

log = logging.getLogger(__name__)

RETRY_TEMPERATURE = 0.7
"""Sampling temperature of retries."""
WRITTEN_TESTS = 10
"""How many tests `written_tests` asks the model for (and keeps at most)."""


def consumer(state: MeshState, runtime: Runtime[MeshContext]) -> dict[str, Any]:
    """Write the next attempt for the state's task."""
    context = runtime.context
    task = state.task
    if task is None:
        raise ValueError("consumer needs a task")
    setup = prompts.consumer_system(context)
    recall = context.memory.recall(task.statement) if context.memory is not None else None
    experience = recall.to_prompt() if recall is not None else ""
    request = prompts.consumer_request(task.statement, task.signature, task.entry_point, experience)
    if (
        state.feedback == "public"
        and not task.tests
        and not state.attempts
        and state.max_attempts > 1
    ):
        # nothing public to check an answer with: CodeT's tests will choose among K blind
        # attempts, so the tests and all K attempts are asked for at once
        blind_messages = [SystemMessage(setup.system), HumanMessage(request)]
        update = _tests_and_attempts(context, task, blind_messages, state.max_attempts, setup)
        return {
            **update,
            "memory_hits": recall.hits if recall is not None else 0,
            "status": "solving",
            "prompt_versions": setup.versions,
        }
    last = next((a for a in reversed(state.attempts) if a.execution), None)
    blind = bool(state.written_tests)  # a retry is one more blind sample for CodeT's choice
    if last is not None and context.settings.retry_strategy == "resample" and not blind:
        request = f"{request}\n{prompts.consumer_resample(last.feedback(state.feedback))}"
    messages: list[BaseMessage] = [SystemMessage(setup.system), HumanMessage(request)]
    if context.settings.retry_strategy == "repair" and not blind:
        # Each failed attempt becomes a turn: the code the model wrote, then the sandbox's verdict.
        for previous in state.attempts:
            if previous.execution is not None:
                messages += [
                    AIMessage(f"```python\n{previous.code}\n```"),
                    HumanMessage(prompts.consumer_retry(previous.feedback(state.feedback))),
                ]
    attempt = _draw(context, task, messages, len(state.attempts) + 1, setup.adapter)
    return {
        "attempts": [attempt],
        "tokens_used": attempt.tokens,
        "memory_hits": recall.hits if recall is not None else 0,
        "status": "solving",
        "prompt_versions": setup.versions,
    }


def _tests_and_attempts(
    context: MeshContext,
    task: Task,
    messages: list[BaseMessage],
    k: int,
    setup: prompts.ConsumerSetup,
) -> dict[str, Any]:
    """CodeT's test-writing call and k blind attempts (the first greedy, the others sampled),
    all in flight at once: the model server decodes them together in its parallel slots."""

    with ThreadPoolExecutor(max_workers=k + 1) as pool:
        tests = pool.submit(written_tests, context, task)
        attempts = list(
            pool.map(lambda n: _draw(context, task, messages, n, setup.adapter), range(1, k + 1))
        )
        tests_written, tests_tokens = tests.result()
    return {
        "written_tests": tests_written,
        "attempts": attempts,
        "tokens_used": tests_tokens + sum(a.tokens for a in attempts),
    }


def _draw(
    context: MeshContext, task: Task, messages: list[BaseMessage], number: int, adapter: str
) -> Attempt:
    """Attempt `number`, decoded with `adapter`: the first greedy; a retry samples more freely
    (at the first attempt's temperature it tends to repeat itself)."""
    llm = solver(context, adapter, RETRY_TEMPERATURE if number > 1 else None)
    started = time.perf_counter()
    reply = ask(llm, messages)
    return Attempt(
        number=number,
        code=prepare_solution(reply.text, task.entry_point, context_source=task.statement),
        tokens=reply.tokens,
        latency_ms=(time.perf_counter() - started) * 1000,
        reply=reply.text,
    )


def solver(
    context: MeshContext, adapter: str, temperature: float | None = None
) -> Runnable[LanguageModelInput, Any]:
    """The chat model solutions are decoded with: the context's, with the learned `adapter`
    (`consumer.adapter`'s text; "" for none) applied per request, at `temperature` when given.
    An adapter this process's server did not load (one promoted while it runs, or a model
    without adapters such as the scripted double) is not applied: the base model answers."""
    llm: Runnable[LanguageModelInput, Any] = context.llm
    if adapter and adapter in context.settings.adapter_names:
        provider = resolve_provider(context.settings)
        llm = llm.bind(extra_body=request_extras(context.settings, provider, adapter))
    elif adapter:
        _warn_not_loaded(adapter)
    return llm if temperature is None else llm.bind(temperature=temperature)


@functools.cache
def _warn_not_loaded(adapter: str) -> None:
    """Once per process and adapter: every solution call would otherwise repeat it."""
    log.warning("adapter %s is not loaded by this model server: the base model answers", adapter)


def blind_sample(
    context: MeshContext, task: Task, temperature: float, *, completion: bool = False
) -> tuple[str, str, int]:
    """One answer to the task's first request, with no feedback and no memory: (code, the
    model's raw reply, tokens). `completion`: the model card's harness shape (the function's
    header and docstring to complete) instead of our restated request."""
    setup = prompts.consumer_system(context)
    if completion:
        messages: list[BaseMessage] = [HumanMessage(prompts.consumer_completion(task.statement))]
    else:
        request = prompts.consumer_request(task.statement, task.signature, task.entry_point)
        messages = [SystemMessage(setup.system), HumanMessage(request)]
    reply = ask(solver(context, setup.adapter, temperature), messages)
    code = prepare_solution(reply.text, task.entry_point, context_source=task.statement)
    return code, reply.text, reply.tokens


def written_tests(context: MeshContext, task: Task) -> tuple[list[str], int]:
    """Tests of the task's function written by the model, greedy, from the statement and
    signature only (CodeT): the asserts of its reply that call the entry point, and tokens."""
    request = prompts.tests_request(task.statement, task.signature, task.entry_point, WRITTEN_TESTS)
    reply = ask(context.llm.bind(temperature=0.0), [HumanMessage(request)])
    return assert_calls(reply.text, task.entry_point, WRITTEN_TESTS), reply.tokens
