"""A promoted prompt version is what the next run uses; a rollback restores the previous one."""

from __future__ import annotations

from pathlib import Path

from app.services import build_context
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.state import MeshState
from nodes import NODE_FUNCTIONS
from nodes.prompts import CONSUMER_SYSTEM, SEED_PROMPTS


def _consumer_version(services: MeshContext) -> tuple[str, str]:
    final = MeshState.model_validate(
        compile_mesh(NODE_FUNCTIONS).invoke(MeshState(task_index=0), context=services)
    )
    consumer_prompt = next(
        p
        for p in services.llm.prompts_seen
        if "Implement `" in p  # type: ignore[attr-defined]
    )
    return final.prompt_versions[CONSUMER_SYSTEM], consumer_prompt


def test_the_next_run_reads_the_promoted_version_and_rollback_restores(tmp_path: Path) -> None:
    services = build_context(Settings(llm="scripted", data_dir=tmp_path), use_memory=False)
    assert services.registry is not None
    assert _consumer_version(services)[0] == "v1"

    text = SEED_PROMPTS[CONSUMER_SYSTEM].text + "\nHandle empty inputs explicitly."
    candidate = services.registry.add_candidate(CONSUMER_SYSTEM, text)
    services.registry.promote(CONSUMER_SYSTEM, candidate.version)
    services.llm.prompts_seen.clear()  # type: ignore[attr-defined]
    version, prompt = _consumer_version(services)
    assert version == candidate.version and "Handle empty inputs explicitly." in prompt

    services.registry.rollback(CONSUMER_SYSTEM)
    assert _consumer_version(services)[0] == "v1"
