"""Build the run-time context (LLM, sandbox, memory, prompt registry) that the settings describe."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from foundation.settings import Settings
from graph.context import MeshContext
from graph.edges import StepRecord
from graph.state import MeshState
from graph.step import StepFunction, bind_step
from learning.rollouts import RolloutRecorder
from llm.chat import make_chat_model, resolve_provider
from llm.lora import learned_adapters
from memory import AgentMemory
from nodes import MEMORY_NODES, NODE_FUNCTIONS
from nodes.prompts import SEED_PROMPTS
from prompt_registry import PromptRegistry
from sandbox import make_sandbox


def build_context(settings: Settings, *, use_memory: bool | None = None) -> MeshContext:
    """Every dependency the settings describe. Memory (mem0) is opened when `use_memory` is true,
    or, by default, when `settings.memory.enabled` is. Prompts come from the registry in the data
    dir (or in the mesh's database, `settings.database_url`). The embedded model server loads
    the adapters learned in the data dir (`llm.lora.learned_adapters`)."""
    wanted = settings.memory.enabled if use_memory is None else use_memory
    if resolve_provider(settings) == "local":  # the embedded server serves the learned adapters
        settings = settings.model_copy(update={"local_model_loras": learned_adapters(settings)})
    return MeshContext(
        settings=settings,
        llm=make_chat_model(settings),
        sandbox=make_sandbox(
            settings.sandbox,
            timeout_s=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            allow_unisolated=settings.sandbox_allow_unisolated,
            docker_image=settings.sandbox_docker_image,
        ),
        registry=PromptRegistry.for_settings(settings, SEED_PROMPTS),
        memory=AgentMemory.from_settings(settings) if wanted else None,
    )


def recorded(context: MeshContext, source: str = "mesh") -> tuple[MeshContext, RolloutRecorder]:
    """The context with its chat model traced, and the recorder that keeps each run as a rollout
    (node and LLM spans, rewards credited to the prompt versions used) in the learning store.
    The recorder is an EdgeSink: hand it every step."""
    assert context.registry is not None, "rollouts are kept next to the prompt registry"
    recorder = RolloutRecorder(context.registry.db, source=source, registry=context.registry)
    return recorder.instrument(context), recorder


def recorded_step(
    settings: Settings, source: str = "worker", *, nodes: Collection[str] | None = None
) -> StepFunction:
    """The step a node worker runs: the nodes with the services the settings describe, each
    step recorded as part of its rollout (LLM spans included) in the learning store. A worker
    for `nodes` none of which uses memory does not open it (mem0 and its stores: seconds of
    start-up per process)."""
    skip_memory = nodes is not None and not MEMORY_NODES.intersection(nodes)
    context, recorder = recorded(
        build_context(settings, use_memory=False if skip_memory else None), source=source
    )
    step = bind_step(NODE_FUNCTIONS, context)

    def recorded_step(node: str, state: MeshState) -> tuple[dict[str, Any], StepRecord]:
        update, record = step(node, state)
        recorder.on_step(record)
        return update, record

    return recorded_step
