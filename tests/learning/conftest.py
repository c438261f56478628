"""Fixtures and clearly-named TEST DOUBLES for the learning tests.

- `PromptSensitiveChatModel`: the scripted LLM double, except that it solves the catalogue's
  tricky tasks on the first attempt only when its system prompt mentions "edge cases" — so a
  prompt edit can really change the reward.
- `OptimizerDouble`: an OpenAI-compatible chat endpoint double for APO's textual-gradient and
  apply-edit calls (an httpx MockTransport: no network, no server). It answers a critique to
  gradient requests and a fixed prompt text to edit requests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from app.services import build_context
from foundation.settings import Settings
from graph.context import MeshContext
from graph.state import Task
from learning.candidates import MeshEvaluator, task_items
from llm.scripted import CATALOGUE, ScriptedChatModel
from nodes.prompts import SEED_PROMPTS
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry

MAGIC = "edge cases"
"""What a consumer system prompt must mention for `PromptSensitiveChatModel` to get tricky tasks
right on the first attempt."""


class PromptSensitiveChatModel(ScriptedChatModel):
    """TEST DOUBLE: `ScriptedChatModel` whose first attempt at a tricky task is right only when the
    consumer's system prompt mentions `MAGIC`. Every system prompt it sees is kept in `seen`."""

    seen: ClassVar[list[str]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if messages:
            PromptSensitiveChatModel.seen.append(str(messages[0].content))
        return super()._generate(messages, *args, **kwargs)

    def knows_the_bug(self, prompt: str, entry_point: str) -> bool:
        return MAGIC in prompt or super().knows_the_bug(prompt, entry_point)


class OptimizerDouble:
    """TEST DOUBLE for APO's LLM: an OpenAI-compatible chat-completions endpoint in memory."""

    def __init__(self, edit_text: str, critique: str = "- Mention edge cases explicitly.") -> None:
        self.edit_text = edit_text
        self.critique = critique
        self.requests: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        text = json.dumps(body["messages"])
        is_edit = "Revise the" in text
        content = self.edit_text if is_edit else self.critique
        return httpx.Response(
            200,
            json={
                "id": "double",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "double"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            },
        )

    def client(self) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url="http://optimizer-double.invalid/v1",
            api_key="double",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self.handle)),
        )

    @property
    def kinds(self) -> list[str]:
        return [
            "edit" if "Revise the" in json.dumps(r["messages"]) else "gradient"
            for r in self.requests
        ]


def catalogue_tasks() -> list[Task]:
    """The scripted double's catalogue as dataset tasks (with reference solutions)."""
    return [
        Task(
            task_id=f"cat-{c.entry_point}",
            statement=c.statement,
            signature=c.signature,
            entry_point=c.entry_point,
            tests=list(c.tests),
            category=c.category,
            reference_solution=c.solution,
            source="dataset",
        )
        for c in CATALOGUE
    ]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db(data_dir: Path) -> Iterator[LearningDB]:
    database = LearningDB.in_data_dir(data_dir)
    yield database
    database.close()


@pytest.fixture
def registry(db: LearningDB) -> PromptRegistry:
    return PromptRegistry(db, SEED_PROMPTS)


@pytest.fixture
def learning_settings(data_dir: Path) -> Settings:
    return Settings(
        llm="scripted",
        data_dir=data_dir,
        review_with_llm=False,
        llm_temperature=0.0,
        max_attempts=1,
        sandbox_timeout_s=60.0,  # full efficiency marks up to 6 s: rewards independent of load
    )


@pytest.fixture
def sensitive_services(learning_settings: Settings) -> MeshContext:
    """MeshContext with the prompt-sensitive scripted double and the real local sandbox."""
    PromptSensitiveChatModel.seen.clear()
    services = build_context(learning_settings, use_memory=False)
    return dataclasses.replace(services, llm=PromptSensitiveChatModel(), prompts=dict(SEED_PROMPTS))


@pytest.fixture
def evaluator(sensitive_services: MeshContext, registry: PromptRegistry) -> MeshEvaluator:
    return MeshEvaluator(sensitive_services, db=registry.db, registry=registry, attempts=1)


@pytest.fixture
def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train: add, reverse_words, merge_intervals. Validation: palindrome, to_roman, fib.
    reverse_words, merge_intervals and fib are the tricky ones."""
    tasks = catalogue_tasks()
    return task_items([tasks[i] for i in (0, 1, 3)]), task_items([tasks[i] for i in (2, 4, 5)])


@pytest.fixture
def optimizer_double() -> type[OptimizerDouble]:
    """The APO optimizer endpoint double (construct it with the edit text to return)."""
    return OptimizerDouble


@pytest.fixture
def catalogue() -> list[Task]:
    """The scripted double's six catalogue tasks as dataset tasks."""
    return catalogue_tasks()
