"""Evaluate prompt versions by running tasks through the real graph.

A *task item* is a JSON-able dict: ``{"index": i, "task": <Task as dict> | None}``. With a task,
the producer only validates it (dataset mode); with None the producer invents task ``index``
(what the producer's prompt is evaluated on). Every run goes through `compile_mesh` +
`BatchRunner` with `MeshContext` whose prompts carry the candidate text, and is recorded as a
rollout by a `RolloutRecorder` (the learning store, and the registry's reward statistics).
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph.builder import compile_mesh
from graph.checkpoint import memory_checkpointer
from graph.context import MeshContext
from graph.runner import BatchRunner
from graph.state import FeedbackMode, Task
from learning.evaluation_cache import DurableCache
from learning.rollouts import RolloutRecorder, RolloutTrace
from learning.splits import humaneval_split_tasks
from nodes import NODE_FUNCTIONS
from nodes.prompts import Prompt
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry

TaskItem = dict[str, Any]


def text_label(text: str) -> str:
    """A stable label for a prompt text that is not (yet) a registry version."""
    return "cand-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def task_items(tasks: Sequence[Task]) -> list[TaskItem]:
    """Dataset tasks as task items."""
    return [{"index": i, "task": t.model_dump(mode="json")} for i, t in enumerate(tasks)]


def producer_items(count: int, start: int = 0) -> list[TaskItem]:
    """Task items asking the producer to invent tasks ``start .. start+count-1``."""
    return [{"index": i, "task": None} for i in range(start, start + count)]


def item_key(item: TaskItem) -> str:
    task = item.get("task")
    return str(task["task_id"]) if task else f"invent-{item['index']}"


def split_tasks(tasks: Sequence[Task], train: int, val: int) -> tuple[list[Task], list[Task]]:
    """A deterministic train/validation split: tasks ordered by a hash of their id (so the split
    does not depend on the pool's order), the first `train` for training, the next `val` held out."""
    if train + val > len(tasks):
        raise ValueError(f"asked for {train}+{val} tasks but the pool has {len(tasks)}")
    ordered = sorted(tasks, key=lambda t: hashlib.sha256(t.task_id.encode()).hexdigest())
    return ordered[:train], ordered[train : train + val]


def humaneval_split(train: int, val: int, offset: int = 0) -> tuple[list[Task], list[Task]]:
    """`train` tasks of the committed train split and `val` of the validation split (from
    position `offset` of each): the test split is never learned from (`learning.splits`)."""
    train_tasks = humaneval_split_tasks("train")[offset : offset + train]
    val_tasks = humaneval_split_tasks("val")[offset : offset + val]
    if len(train_tasks) < train or len(val_tasks) < val:
        raise ValueError(
            f"asked for {train} train and {val} validation tasks from position {offset}; "
            "the committed splits hold 40 of each"
        )
    return train_tasks, val_tasks


@dataclass
class Score:
    """How a prompt did on a set of task items."""

    reward: float
    pass_rate: float
    n: int
    rewards: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, traces: Sequence[RolloutTrace], prompt_name: str) -> Score:
        rewards = [t.rewards.get(prompt_name, 0.0) for t in traces]
        return cls(
            reward=round(statistics.fmean(rewards), 4) if rewards else 0.0,
            pass_rate=round(sum(t.passed for t in traces) / len(traces), 4) if traces else 0.0,
            n=len(traces),
            rewards=rewards,
        )


class MeshEvaluator:
    """Runs task items through the graph with given prompt texts and records the rollouts.

    Args:
        services: the mesh's services (LLM, sandbox, settings); prompts are replaced per run.
        db: the learning store rollouts are written to.
        registry: source of the base prompts (its active versions) and of version labels; the
            rewards of runs that used a registered version are added to its statistics.
        attempts: consumer attempts per task.
        feedback: what a retry is told and what ends the loop (`graph.state.FeedbackMode`):
            `public` is the honest evaluation's loop (nothing hidden reaches the model).
        cache: reuse the outcome of an identical (prompts, task) run instead of re-running it; only
            sound with a deterministic LLM (temperature 0 or the scripted double).
        cache_path: with `cache`, also keep every outcome in this file and replay the ones it
            holds (`learning.evaluation_cache`): a stopped learning run resumes task by task.
    """

    def __init__(
        self,
        services: MeshContext,
        *,
        db: LearningDB,
        registry: PromptRegistry,
        attempts: int = 1,
        feedback: FeedbackMode = "hidden_counts",
        cache: bool = False,
        on_rollout: Callable[[RolloutTrace], None] | None = None,
        cache_path: Path | None = None,
    ) -> None:
        self.services = services
        self.db = db
        self.registry = registry
        self.attempts = attempts
        self.feedback = feedback
        self.cache = cache
        self.on_rollout = on_rollout
        self.runs = 0
        self.cache_hits = 0
        self._cache: dict[tuple[Any, ...], RolloutTrace] = {}
        self._durable = DurableCache(cache_path) if cache and cache_path else None
        self._lock = threading.Lock()

    def prompts_with(self, overrides: dict[str, str]) -> dict[str, Prompt]:
        """The registry's active prompts with `overrides` (name -> text) applied; an override
        whose text is a registered version carries that version's label, else `text_label`."""
        prompts = self.registry.current_all()
        for name, text in overrides.items():
            known = self.registry.find_text(name, text)
            prompts[name] = Prompt(name, known.version if known else text_label(text), text)
        return prompts

    def run_one(
        self, item: TaskItem, overrides: dict[str, str], source: str = "learn"
    ) -> RolloutTrace:
        """Run one task item through the graph with the given prompt texts; its rollout."""
        prompts = self.prompts_with(overrides)
        key = (tuple(sorted((n, p.version, p.text) for n, p in prompts.items())), item_key(item))
        hit = self._cached(key)
        if hit is not None:
            self.cache_hits += 1
            return hit
        recorder = RolloutRecorder(self.db, source=source, registry=self.registry, keep=1)
        services = recorder.instrument(dataclasses.replace(self.services, prompts=prompts))
        runner = BatchRunner(
            compile_mesh(NODE_FUNCTIONS, memory_checkpointer(), recorder),
            services,
            batch_id=f"{source}-{uuid.uuid4().hex[:8]}",
        )
        task = Task.model_validate(item["task"]) if item.get("task") else None
        runner.run_task(
            int(item["index"]), task, max_attempts=self.attempts, feedback=self.feedback
        )
        if not recorder.finished:
            raise RuntimeError(f"the graph run of {item_key(item)} did not reach the supervisor")
        trace = recorder.finished[-1]
        self.runs += 1
        self._keep(key, trace)
        if self.on_rollout is not None:
            self.on_rollout(trace)
        return trace

    def _cached(self, key: tuple[Any, ...]) -> RolloutTrace | None:
        """An earlier identical run's rollout (in memory, else on disk), when caching."""
        if not self.cache:
            return None
        with self._lock:
            hit = self._cache.get(key)
            if hit is None and self._durable is not None:
                hit = self._durable.get(key)
        return hit

    def _keep(self, key: tuple[Any, ...], trace: RolloutTrace) -> None:
        if not self.cache:
            return
        with self._lock:
            self._cache[key] = trace
            if self._durable is not None:
                self._durable.put(key, trace)

    def evaluate(
        self,
        items: Sequence[TaskItem],
        prompt_name: str,
        text: str,
        source: str = "learn-val",
    ) -> tuple[Score, list[RolloutTrace]]:
        """Run every item with `text` as prompt `prompt_name`; the score it earned."""
        traces = [self.run_one(item, {prompt_name: text}, source) for item in items]
        return Score.of(traces, prompt_name), traces
