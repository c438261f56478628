"""The periodic optimizer for the running mesh: every N reviewed tasks, one learning round
(bandit by default, or APO) with the same `Learner` code as `aimesh learn`.

`PeriodicOptimizer` is an `EdgeSink` (it counts supervisor -> __end__ steps) and also a
`RolloutRecorder` listener (it counts finished rollouts): wire it one way, not both. A round runs
on a background thread by default, so the graph never waits for it; rounds never overlap (a
trigger while a round runs is skipped). Promotions land in the registry, which the next run's
`MeshContext` reads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from foundation.settings import Settings
from graph.context import MeshContext
from graph.edges import StepRecord
from graph.state import Task
from learning.candidates import MeshEvaluator, split_tasks, task_items
from learning.learner import Algorithm, Learner, RoundReport, learning_settings
from learning.rollouts import END, LAST_NODE, RolloutTrace, load_rollouts
from nodes.prompts import CONSUMER_SYSTEM
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry

log = logging.getLogger(__name__)

RoundFunction = Callable[[], list[RoundReport]]


class PeriodicOptimizer:
    """Counts reviewed tasks and runs `run_round` every `every` of them.

    Args:
        every: tasks between rounds.
        run_round: one learning round (see `learner_round`); returns its reports.
        background: run the round on a daemon thread (True) or inline in the step (False).
        on_report: called with each round's reports.
    """

    def __init__(
        self,
        every: int,
        run_round: RoundFunction,
        *,
        background: bool = True,
        on_report: Callable[[list[RoundReport]], None] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.every = every
        self.run_round = run_round
        self.background = background
        self.on_report = on_report
        self.seen = 0
        self.rounds = 0
        """Rounds that ran (and reported a decision)."""
        self.skipped = 0
        """Triggers dropped because a round was still running."""
        self.too_few_tasks = 0
        """Triggers whose round found too few tasks to learn from (it reported nothing)."""
        self.reports: list[RoundReport] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def on_step(self, step: StepRecord) -> None:
        """EdgeSink: a supervisor step that ends the run is one reviewed task."""
        if step.node == LAST_NODE and step.next_node == END:
            self._count()

    def __call__(self, trace: RolloutTrace) -> None:
        """RolloutRecorder listener: one finished rollout is one reviewed task."""
        self._count()

    def _count(self) -> None:
        with self._lock:
            self.seen += 1
            if self.seen % self.every:
                return
            if self._thread is not None and self._thread.is_alive():
                self.skipped += 1
                log.info("periodic optimizer: a round is still running; skipped")
                return
            if self.background:
                self._thread = threading.Thread(
                    target=self._round, name="aimesh-periodic-optimizer", daemon=True
                )
                self._thread.start()
                return
        self._round()

    def _round(self) -> None:
        try:
            reports = self.run_round()
        except Exception as exc:  # the mesh keeps running; the error is kept and logged
            log.exception("periodic optimizer round failed")
            self.errors.append(exc)
            return
        with self._lock:
            if not reports:
                self.too_few_tasks += 1
                return
            self.rounds += 1
            self.reports.extend(reports)
        if self.on_report is not None:
            self.on_report(reports)

    def summary(self) -> str:
        """The rounds in one line: each round's decision, and the triggers that ran no round
        (too few tasks seen yet, or a round still running)."""
        decisions = ", ".join(f"{r.prompt} {r.decision}" for r in self.reports) or "none"
        line = f"learning: {self.rounds} round(s) ({decisions})"
        if self.too_few_tasks:
            line += f"; {self.too_few_tasks} not run (too few tasks seen yet)"
        if self.skipped:
            line += f"; {self.skipped} skipped (a round was still running)"
        return line

    def wait(self, timeout: float | None = None) -> None:
        """Block until a running round ends."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def at_temperature(llm: BaseChatModel, temperature: float) -> BaseChatModel:
    """The same chat model sampling at `temperature` (a model without that setting as is)."""
    if "temperature" in type(llm).model_fields:
        return llm.model_copy(update={"temperature": temperature})
    return llm


def for_evaluation(services: MeshContext, attempts: int = 1) -> MeshContext:
    """The mesh's services as learning evaluates with them: no memory (evaluations must not feed,
    or be fed by, the live agents' experience), the model at temperature 0 whatever the live
    mesh samples at, `attempts` consumer attempts (`learning_settings`)."""
    settings: Settings = learning_settings(services.settings, attempts)
    return dataclasses.replace(
        services, settings=settings, llm=at_temperature(services.llm, 0.0), memory=None
    )


def recent_tasks(db: LearningDB, limit: int = 200) -> list[Task]:
    """Distinct tasks of the mesh's recently finished rollouts (newest first)."""
    seen: dict[str, Task] = {}
    for trace in load_rollouts(db, source="mesh", limit=limit):
        if trace.task is not None and trace.task.task_id not in seen:
            seen[trace.task.task_id] = trace.task
    return list(seen.values())


def learner_round(
    services: MeshContext,
    registry: PromptRegistry,
    *,
    prompts: tuple[str, ...] = (CONSUMER_SYSTEM,),
    algorithm: Algorithm = "bandit",
    train: int = 6,
    val: int = 6,
    tasks: Callable[[], list[Task]] | None = None,
    attempts: int = 1,
    learner_options: dict[str, Any] | None = None,
) -> RoundFunction:
    """A round function for `PeriodicOptimizer`: each call builds a `Learner` on the mesh's own
    services and recent tasks (from the learning store; pass `tasks` to choose them) split
    deterministically into `train`/`val`, and runs one round per prompt in `prompts`."""
    evaluation_services = for_evaluation(services, attempts)
    settings = evaluation_services.settings
    db = registry.db

    def run() -> list[RoundReport]:
        pool = tasks() if tasks is not None else recent_tasks(db)
        if len(pool) < train + val:
            log.info(
                "periodic optimizer: %d tasks seen, %d needed; skipped", len(pool), train + val
            )
            return []
        train_tasks, val_tasks = split_tasks(pool, train, val)
        evaluator = MeshEvaluator(
            evaluation_services,
            db=db,
            registry=registry,
            attempts=attempts,
            cache=settings.llm == "scripted",
        )
        learner = Learner(
            evaluator,
            registry,
            task_items(train_tasks),
            task_items(val_tasks),
            **(learner_options or {}),
        )
        return [learner.run_round(name, algorithm) for name in prompts]

    return run


def periodic_optimizer(
    services: MeshContext,
    registry: PromptRegistry,
    every: int = 20,
    *,
    algorithm: Algorithm = "bandit",
    prompts: tuple[str, ...] = (CONSUMER_SYSTEM,),
    background: bool = True,
) -> PeriodicOptimizer:
    """A `PeriodicOptimizer` for a running mesh: every `every` reviewed tasks, one `algorithm`
    round (bandit by default) per prompt in `prompts`, on the mesh's recent tasks, with the
    mesh's `registry`."""
    round_function = learner_round(services, registry, prompts=prompts, algorithm=algorithm)
    return PeriodicOptimizer(every, round_function, background=background)
