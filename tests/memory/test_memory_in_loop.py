"""Memory changes what the agents do: real mem0 and embedder in the real graph (scripted LLM)."""

from __future__ import annotations

from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.state import MeshState
from llm.scripted import ScriptedChatModel
from memory import AgentMemory
from nodes import NODE_FUNCTIONS
from sandbox import Sandbox


def _services(settings: Settings, sandbox: Sandbox, memory: AgentMemory) -> MeshContext:
    return MeshContext(settings=settings, llm=ScriptedChatModel(), sandbox=sandbox, memory=memory)


def test_fail_then_pass_stores_a_recipe_that_reaches_the_next_consumer_prompt(
    scripted_services: MeshContext, memory: AgentMemory
) -> None:
    services = _services(scripted_services.settings, scripted_services.sandbox, memory)
    graph = compile_mesh(NODE_FUNCTIONS)
    # Catalogue task 2 (reverse_words) fails its first attempt and passes after feedback.
    first = MeshState.model_validate(graph.invoke(MeshState(task_index=1), context=services))
    assert [a.execution.passed for a in first.attempts if a.execution] == [False, True]
    recipes = memory.list(kind="fix_recipe")
    assert len(recipes) == 1 and "reverse_words" in recipes[0].text
    assert memory.list(kind="failure") and memory.list(kind="best_practice")
    assert [c for c, _, _ in memory.coverage()] == ["strings"]

    again = _services(scripted_services.settings, scripted_services.sandbox, memory)
    second = MeshState.model_validate(graph.invoke(MeshState(task_index=1), context=again))
    assert second.memory_hits >= 2  # the producer's coverage and the consumer's recall
    consumer_prompt = next(p for p in again.llm.prompts_seen if "Implement `reverse_words`" in p)  # type: ignore[attr-defined]
    assert "From experience (" in consumer_prompt and "Fixes that worked" in consumer_prompt


def test_producer_steers_by_what_memory_says_was_done(
    scripted_services: MeshContext, memory: AgentMemory
) -> None:
    for n in range(6):
        memory.record_task(f"t{n}", "strings", 3, f"string task {n}")
    services = _services(scripted_services.settings, scripted_services.sandbox, memory)
    final = MeshState.model_validate(
        compile_mesh(NODE_FUNCTIONS).invoke(MeshState(task_index=0), context=services)
    )
    producer_prompt = next(p for p in services.llm.prompts_seen if "Create task #1" in p)  # type: ignore[attr-defined]
    assert "strings (6)" in producer_prompt
    asked = producer_prompt.split("in the category '")[1].split("'")[0]
    assert asked == "math"  # the first category of the list that memory has not seen
    # six tasks done already: difficulty rises from the first task's 1 to 1 + 6 // 2
    assert "at difficulty 4" in producer_prompt
    assert final.task is not None and final.task.difficulty == 4
    assert ("math", 1, 4) in memory.coverage()


def test_an_unrelated_task_recalls_nothing(memory: AgentMemory) -> None:
    memory.record_fix_recipe(
        "Reverse the order of the words in a sentence.",
        "AssertionError: assert reverse_words('a b c') == 'c b a'",
        "def reverse_words(t):\n    return t[::-1]\n",
        "def reverse_words(t):\n    return ' '.join(reversed(t.split(' ')))\n",
    )
    assert memory.recall("Reverse the words of a sentence").hits == 1
    assert memory.recall("Compute the determinant of a 3x3 integer matrix.").hits == 0
