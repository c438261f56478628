"""`aimesh run`: tasks through the closed loop, in process or as distributed workers."""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from app.cli.common import (
    DataDirOption,
    LlmOption,
    compact_table,
    console,
    count_option,
    progress,
    settings_with,
)
from app.cli.learn import LearnAlgorithm, expert_iteration_weights
from app.distributed import StartHooks, partitions_for, run_distributed, shared_llm_endpoint
from app.services import build_context, recorded
from foundation.errors import InfrastructureError
from foundation.settings import LLMProvider, SandboxBackend, Settings
from graph.builder import compile_mesh
from graph.checkpoint import durable_checkpointer
from graph.context import MeshContext
from graph.datasets import DATASET_HELP, dataset_tasks
from graph.edges import EdgeSink, FanOutSink
from graph.kafka_sink import KafkaEdgeSink
from graph.routing import NODES
from graph.runner import BatchRunner, read_manifest, write_manifest
from graph.state import BatchAudit, Task, TaskOutcome
from graph.topics import ALL_TOPICS
from graph.wire import BatchAuditMessage
from kafka_edges.broker import broker_for
from kafka_edges.config import topic_prefix
from learning.periodic import PeriodicOptimizer, learner_round
from learning.rollouts import RolloutRecorder
from llm.chat import check_llm
from nodes import NODE_FUNCTIONS
from nodes.prompts import CONSUMER_ADAPTER
from nodes.supervisor import audit_batch


class RunOptions(BaseModel):
    """What `aimesh run` was asked to do (recorded in the batch manifest for `--resume`)."""

    tasks: int = 3
    dataset: str | None = None
    attempts: int | None = None
    sandbox: SandboxBackend | None = None
    llm: LLMProvider | None = None
    kafka: bool = True
    distributed: bool = False
    workers: int = 1
    learn_every: int = 0
    learn_algorithm: LearnAlgorithm = "bandit"
    concurrency: int | None = None
    data_dir: Path | None = None

    def settings(self) -> Settings:
        return settings_with(
            max_attempts=self.attempts, sandbox=self.sandbox, llm=self.llm, data_dir=self.data_dir
        )


def run(
    count: Annotated[int, count_option("tasks to run")] = 3,
    dataset: Annotated[
        str | None, typer.Option(help=f"{DATASET_HELP} [default: tasks the producer invents]")
    ] = None,
    attempts: Annotated[int | None, typer.Option(min=1, max=10, help="consumer attempts")] = None,
    sandbox: Annotated[
        SandboxBackend | None,
        typer.Option(help="where code runs [default: AIMESH_SANDBOX or local]"),
    ] = None,
    llm: LlmOption = None,
    resume: Annotated[str | None, typer.Option(help="batch id to resume")] = None,
    kafka: Annotated[bool, typer.Option(help="publish every transition to Kafka")] = True,
    distributed: Annotated[
        bool, typer.Option(help="run each node as a Kafka consumer-group worker process")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes per node with --distributed (supervised: restarted if one dies)",
        ),
    ] = 1,
    learn_every: Annotated[
        int, typer.Option(min=0, help="run a learning round every N reviewed tasks (0: off)")
    ] = 0,
    learn_algorithm: Annotated[
        LearnAlgorithm,
        typer.Option(
            help="bandit (the consumer's prompt) or expert-iteration (a LoRA adapter of the "
            "embedded model, trained on the loop's verified answers)"
        ),
    ] = "bandit",
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="tasks in flight at once, in process [default: the model server's slots, "
            "AIMESH_LOCAL_MODEL_PARALLEL]",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run tasks through the closed loop and print a results table.

    Every run is recorded as a rollout (spans, reward, prompt versions) in the learning store.
    """
    options = RunOptions(
        tasks=count, dataset=dataset, attempts=attempts, sandbox=sandbox, llm=llm, kafka=kafka,
        distributed=distributed, workers=workers, learn_every=learn_every,
        learn_algorithm=learn_algorithm,
        concurrency=concurrency, data_dir=data_dir,
    )  # fmt: skip
    run_batch(options, resume)


def run_batch(options: RunOptions, resume: str | None = None) -> None:
    """Run (or resume) one batch as `options` say, then audit it and print the results."""
    if resume:
        options = _resumed(options, resume)
    settings = options.settings()
    learning_error: str | None = None
    given: list[Task | None] = (
        list(dataset_tasks(options.dataset, limit=options.tasks))
        if options.dataset
        else [None] * options.tasks
    )
    with contextlib.ExitStack() as stack:
        if options.distributed:  # one model server for every worker process
            settings = stack.enter_context(shared_llm_endpoint(settings))
        check_llm(settings)  # before the broker: a wrong endpoint fails at once, with a hint
        if options.kafka or options.distributed:
            broker = stack.enter_context(
                broker_for(
                    settings,
                    topics=ALL_TOPICS,
                    partitions=partitions_for(options.workers),
                    topic_prefix=topic_prefix(settings),
                )
            )
            settings = broker.settings
            kind = "embedded" if broker.embedded else "external"
            console.print(f"Kafka: {broker.bootstrap} ({kind})")
        started = time.monotonic()
        if options.distributed:
            batch_id, outcomes = _distributed(settings, options, given, resume)
        else:
            batch_id, outcomes, learning_error = _in_process(
                stack, settings, options, given, resume
            )
        audit = audit_batch(
            batch_id, outcomes, settings.task_time_budget_s, settings.task_token_budget,
            wall_time_s=time.monotonic() - started,
        )  # fmt: skip
        if options.kafka or options.distributed:
            with KafkaEdgeSink(settings, client="supervisor") as reports:
                reports.publish(BatchAuditMessage.of(audit))
    _print_results(outcomes, audit)
    if learning_error:
        raise LearningRoundError(learning_error)


def _resumed(options: RunOptions, resume: str) -> RunOptions:
    """The options batch `resume` was started with (the model and data dir given now win)."""
    saved = RunOptions.model_validate(read_manifest(_manifest_path(options.settings(), resume)))
    return saved.model_copy(
        update={"llm": options.llm or saved.llm, "data_dir": options.data_dir or saved.data_dir}
    )


def _in_process(
    stack: contextlib.ExitStack,
    settings: Settings,
    options: RunOptions,
    given: list[Task | None],
    resume: str | None,
) -> tuple[str, list[TaskOutcome], str | None]:
    """Run the batch through the in-process graph: its id, outcomes and learning error."""
    context, recorder = recorded(build_context(settings))
    sinks, optimizer = learning_sinks(
        stack, context, recorder, options.learn_every, options.learn_algorithm
    )
    if options.kafka:
        sinks.insert(0, stack.enter_context(KafkaEdgeSink(settings)))
    checkpointer = stack.enter_context(durable_checkpointer(settings))
    graph = compile_mesh(NODE_FUNCTIONS, checkpointer, edge_sink=FanOutSink(*sinks))
    runner = BatchRunner(graph, context, batch_id=resume)
    _record_batch(settings, runner.batch_id, options, given)
    _announce(runner.batch_id)
    concurrency = options.concurrency or settings.local_model_parallel
    outcomes = _run_with_progress(runner, given, settings.max_attempts, concurrency)
    learning_error = _finish_learning(optimizer) if optimizer is not None else None
    return runner.batch_id, outcomes, learning_error


def _manifest_path(settings: Settings, batch_id: str) -> Path:
    return settings.data_dir / "batches" / f"{batch_id}.json"


def _record_batch(
    settings: Settings,
    batch_id: str,
    options: RunOptions,
    given: list[Task | None],
    **more: object,
) -> None:
    """Write the batch's manifest: what `--resume` reruns."""
    write_manifest(
        _manifest_path(settings, batch_id),
        **options.model_copy(update={"tasks": len(given)}).model_dump(mode="json"),
        **more,
    )


def _announce(batch_id: str) -> None:
    console.print(f"batch [bold]{batch_id}[/] (resume: --resume {batch_id})")


def _distributed(
    settings: Settings, options: RunOptions, given: list[Task | None], resume: str | None
) -> tuple[str, list[TaskOutcome]]:
    """Run the batch on worker processes: its id and outcomes. Resumed, the runs it fed are
    not fed again: their unfinished ones are re-published from the delivery ledger."""
    batch_id = resume or f"distributed-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    fed = read_manifest(_manifest_path(settings, batch_id)).get("runs") if resume else None
    _record_batch(settings, batch_id, options, given, runs=fed)
    _announce(batch_id)
    total = len(fed) if fed else len(given)
    with progress() as bars:
        starting = bars.add_task("starting worker processes", total=options.workers * len(NODES))
        bar = bars.add_task("tasks (distributed)", total=total)
        hooks = StartHooks(
            on_ready=lambda ready: bars.update(starting, completed=ready),
            on_fed=lambda runs: _record_batch(settings, batch_id, options, given, runs=runs),
        )
        outcomes = run_distributed(
            settings, given, per_role=options.workers, fed=fed or None, hooks=hooks,
            on_report=lambda _outcome: bars.advance(bar),
        )  # fmt: skip
    return batch_id, outcomes


def _print_results(outcomes: list[TaskOutcome], audit: BatchAudit) -> None:
    console.print(outcome_table(outcomes))
    console.print(f"solved {sum(o.passed for o in outcomes)}/{len(outcomes)}")
    console.print(f"supervisor ({audit.verdict}): {audit.summary}")
    for anomaly in audit.anomalies:
        console.print(f"  - {anomaly}")


def learning_sinks(
    stack: contextlib.ExitStack,
    context: MeshContext,
    recorder: RolloutRecorder,
    learn_every: int,
    algorithm: LearnAlgorithm = "bandit",
) -> tuple[list[EdgeSink], PeriodicOptimizer | None]:
    """The rollout recorder (every run, with rewards credited to the prompt versions used) and,
    with `learn_every`, the periodic optimizer (also returned, to be awaited). Expert iteration
    trains and judges its adapters on a model server of its own (closed with `stack`); the live
    mesh's server takes a promoted adapter at its next start."""
    assert context.registry is not None
    if not learn_every:
        return [recorder], None
    if algorithm == "expert-iteration":
        weights = expert_iteration_weights(stack, context.settings)
        round_function = learner_round(
            context, context.registry, prompts=(CONSUMER_ADAPTER,), algorithm=algorithm,
            learner_options={"weights": weights},
        )  # fmt: skip
    else:
        round_function = learner_round(context, context.registry)
    optimizer = PeriodicOptimizer(learn_every, round_function)
    return [recorder, optimizer], optimizer


def _finish_learning(optimizer: PeriodicOptimizer) -> str | None:
    """Wait for a learning round still running and report the rounds; what failed, if any."""
    with console.status("waiting for the running learning round"):
        optimizer.wait()
    console.print(optimizer.summary(), highlight=False)
    if not optimizer.errors:
        return None
    error = optimizer.errors[0]
    return f"{len(optimizer.errors)} learning round(s) failed: {type(error).__name__}: {error}"


class LearningRoundError(InfrastructureError):
    """A periodic learning round failed (reported once the batch is done)."""


def _run_with_progress(
    runner: BatchRunner, given: list[Task | None], max_attempts: int, concurrency: int
) -> list[TaskOutcome]:
    """Run the batch's tasks, `concurrency` at once (their model calls share the server's
    slots), with a progress bar; the outcomes in task order."""
    with progress() as bars:
        bar = bars.add_task("tasks", total=len(given))

        def on_node(index: int, node: str) -> None:
            bars.update(bar, description=f"task {index + 1}: {node}")

        def run_one(index: int) -> TaskOutcome:
            outcome = runner.run_task(index, given[index], max_attempts, on_node=on_node)
            bars.advance(bar)
            return outcome

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(run_one, range(len(given))))
        bars.update(bar, description="tasks")
    return outcomes


def outcome_table(outcomes: list[TaskOutcome]) -> Table:
    """The final results: one row per task, named by its id (what `aimesh replay` takes)."""
    table = compact_table(
        "AI-Mesh results", "#", "task", "function", "category", "diff", "tries", "passed",
        "reward", "s", wrap={"function", "category"},
    )  # fmt: skip
    for o in outcomes:
        table.add_row(
            str(o.index + 1), escape(o.task_id), escape(o.entry_point), escape(o.category),
            str(o.difficulty), str(o.attempts), "[green]yes[/]" if o.passed else "[red]no[/]",
            f"{o.reward:.2f}", f"{o.seconds:.1f}",
        )  # fmt: skip
    return table
