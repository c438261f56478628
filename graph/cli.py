"""The `aimesh` command line."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dashboard.cli import dashboard as dashboard_command
from graph.checkpoint import sqlite_checkpointer
from graph.distributed import DistributedRunError, run_distributed, shared_llm_endpoint
from graph.edges import EdgeSink, FanOutSink
from graph.runner import BatchRunner, compile_mesh, read_manifest, write_manifest
from graph.settings import Settings
from graph.state import Task, TaskOutcome
from graph.tracing import configure_tracing
from kafka_edges.broker import BrokerError, broker_for
from kafka_edges.cli import register as register_kafka_commands
from kafka_edges.messages import BatchAuditMessage
from kafka_edges.publisher import KafkaEdgeSink, PublishError
from learning.cli import learn_app
from llm.chat import LLMUnavailableError
from llm.cli import model_app
from memory import AgentMemoryError
from memory.cli import memory_app
from nodes.dataset import DatasetError, load_tasks, task_id_of
from nodes.services import Services
from nodes.supervisor import audit_batch
from sandbox import SandboxError

app = typer.Typer(
    help="AI-Mesh: closed-loop, self-improving code generation.", no_args_is_help=True
)


@app.callback()
def _startup() -> None:
    """Settle process-wide concerns before any command runs."""
    configure_tracing()
    # SIGTERM exits like Ctrl-C does, so atexit stops the model server and brokers we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


app.add_typer(model_app, name="model", help="Fetch and serve the embedded local model.")
app.add_typer(memory_app, name="memory", help="Inspect and manage the agents' memory.")
app.add_typer(learn_app, name="learn", help="Learn better prompts; inspect and roll back versions.")
register_kafka_commands(app)
app.command("dashboard", help="Serve the live telemetry dashboard.")(dashboard_command)
console = Console()
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    LLMUnavailableError,
    SandboxError,
    DatasetError,
    FileNotFoundError,
    BrokerError,
    PublishError,
    DistributedRunError,
    AgentMemoryError,
)


@contextlib.contextmanager
def readable_errors() -> Iterator[None]:
    """Turn infrastructure failures into one readable line and exit code 2."""
    try:
        yield
    except INFRASTRUCTURE_ERRORS as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, with the CLI's explicit options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def run(
    tasks: Annotated[int, typer.Option("--tasks", "-n", min=1, help="how many tasks")] = 3,
    dataset: Annotated[Path | None, typer.Option(help="HumanEval-format JSONL of tasks")] = None,
    attempts: Annotated[int | None, typer.Option(min=1, max=10, help="consumer attempts")] = None,
    sandbox: Annotated[str | None, typer.Option(help="local | e2b | docker")] = None,
    llm: Annotated[str | None, typer.Option(help="auto | openai | local | scripted")] = None,
    resume: Annotated[str | None, typer.Option(help="batch id to resume")] = None,
    kafka: Annotated[bool, typer.Option(help="publish every transition to Kafka")] = True,
    distributed: Annotated[
        bool, typer.Option(help="run each node as a Kafka consumer-group worker process")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="workers per node with --distributed")] = 1,
    learn_every: Annotated[
        int, typer.Option(min=0, help="run a bandit learning round every N reviewed tasks (0: off)")
    ] = 0,
) -> None:
    """Run tasks through the closed loop and print a results table.

    Every run is recorded as a rollout (spans, reward, prompt versions) in the learning store.
    """
    with readable_errors():
        settings = settings_with(max_attempts=attempts, sandbox=sandbox, llm=llm)
        manifest_dir = settings.data_dir / "batches"
        if resume:
            args = read_manifest(manifest_dir / f"{resume}.json")
            tasks, dataset = args["tasks"], Path(args["dataset"]) if args["dataset"] else None
            settings = settings_with(
                max_attempts=args["attempts"], sandbox=args["sandbox"], llm=llm or args["llm"]
            )
        given: list[Task | None] = (
            list(load_tasks(dataset, limit=tasks)) if dataset else [None] * tasks
        )
        with contextlib.ExitStack() as stack:
            if kafka or distributed:
                broker = stack.enter_context(broker_for(settings))
                settings = broker.settings
                kind = "embedded" if broker.embedded else "external"
                console.print(f"Kafka: {broker.bootstrap} ({kind})")
            if distributed:
                shared = stack.enter_context(shared_llm_endpoint(settings))
                batch_id = "distributed-" + time.strftime("%Y%m%d-%H%M%S")
                outcomes = _distributed_with_progress(shared, given, workers)
            else:
                services = Services.from_settings(settings)
                sinks = learning_sinks(services, learn_every)
                if kafka:
                    sinks.insert(0, stack.enter_context(KafkaEdgeSink(settings)))
                checkpointer = stack.enter_context(sqlite_checkpointer(settings.checkpoint_db))
                runner = BatchRunner(
                    compile_mesh(checkpointer, edge_sink=FanOutSink(*sinks)),
                    services,
                    batch_id=resume,
                )
                write_manifest(
                    manifest_dir / f"{runner.batch_id}.json",
                    tasks=len(given),
                    dataset=dataset,
                    attempts=settings.max_attempts,
                    sandbox=settings.sandbox,
                    llm=settings.llm,
                )
                console.print(
                    f"batch [bold]{runner.batch_id}[/] (resume: --resume {runner.batch_id})"
                )
                batch_id = runner.batch_id
                outcomes = _run_with_progress(runner, given, settings.max_attempts)
            audit = audit_batch(
                batch_id, outcomes, settings.task_time_budget_s, settings.task_token_budget
            )
            if kafka or distributed:
                with KafkaEdgeSink(settings, client="supervisor") as reports:
                    reports.publish(BatchAuditMessage.of(audit))
        console.print(outcome_table(outcomes))
        console.print(f"solved {sum(o.passed for o in outcomes)}/{len(outcomes)}")
        console.print(f"supervisor ({audit.verdict}): {audit.summary}")
        for anomaly in audit.anomalies:
            console.print(f"  - {anomaly}")


def learning_sinks(services: Services, learn_every: int) -> list[EdgeSink]:
    """The rollout recorder (every run, with rewards credited to the prompt versions used) and,
    with `learn_every`, the periodic optimizer."""
    from learning.periodic import PeriodicOptimizer, learner_round
    from learning.tracing import RolloutRecorder

    assert services.registry is not None
    recorder = RolloutRecorder(services.registry.db, registry=services.registry)
    sinks: list[EdgeSink] = [recorder]
    if learn_every:
        sinks.append(PeriodicOptimizer(learn_every, learner_round(services, services.registry)))
    return sinks


def _distributed_with_progress(
    settings: Settings, given: list[Task | None], per_role: int
) -> list[TaskOutcome]:
    with Progress(*_columns(), console=console) as progress:
        bar = progress.add_task("tasks (distributed)", total=len(given))
        return run_distributed(
            settings,
            given,
            per_role=per_role,
            on_report=lambda _outcome: progress.advance(bar),
        )


@app.command("eval")
def evaluate_command(
    dataset: Annotated[
        str, typer.Option(help="humaneval, or a HumanEval-format JSONL")
    ] = "humaneval",
    limit: Annotated[int | None, typer.Option(min=1, help="first N problems")] = None,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="attempts per problem")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    llm: Annotated[str | None, typer.Option(help="auto | openai | local | scripted")] = None,
    resume: Annotated[str | None, typer.Option(help="batch id of an interrupted eval")] = None,
    memory: Annotated[
        bool,
        typer.Option(
            help="agents use their long-term memory store (off by default: a store that saw these "
            "problems before would make the scores dependent on earlier runs)"
        ),
    ] = False,
    retry: Annotated[
        str | None, typer.Option(help="retry strategy: repair | resample (AIMESH_RETRY_STRATEGY)")
    ] = None,
    ids: Annotated[
        str | None, typer.Option(help="only these problems, comma-separated (e.g. HumanEval/10)")
    ] = None,
) -> None:
    """Measure pass@1 (first attempt and loop) on HumanEval through the graph."""
    from graph.evaluation import evaluate, humaneval_tasks, write_report

    with readable_errors():
        settings = settings_with(
            llm=llm, review_with_llm=False, llm_temperature=0.0, retry_strategy=retry
        )
        tasks = humaneval_tasks() if dataset == "humaneval" else load_tasks(Path(dataset))
        if ids:
            wanted = {task_id_of(i) for i in ids.split(",") if i.strip()}
            tasks = [t for t in tasks if t.task_id in wanted]
            if missing := wanted - {t.task_id for t in tasks}:
                raise typer.BadParameter(f"unknown problem(s): {', '.join(sorted(missing))}")
        tasks = tasks[:limit] if limit else tasks
        checkpointer = sqlite_checkpointer(settings.checkpoint_db)
        with checkpointer as saver, Progress(*_columns(), console=console) as progress:
            services = Services.from_settings(settings, use_memory=memory)
            runner = BatchRunner(compile_mesh(saver), services, resume)
            progress.console.print(f"batch {runner.batch_id} (resume: --resume {runner.batch_id})")
            bar = progress.add_task("problems", total=len(tasks))
            solved = 0

            def on_done(outcome: TaskOutcome) -> None:
                nonlocal solved
                solved += outcome.passed
                progress.update(bar, advance=1, description=f"solved {solved}")

            summary, outcomes = evaluate(runner, tasks, attempts, on_done=on_done)
        table = Table(title=f"HumanEval ({summary.problems} problems, K={attempts})")
        for column in ("metric", "value"):
            table.add_column(column)
        for key, value in summary.model_dump().items():
            table.add_row(key, str(value))
        console.print(table)
        if json_out:
            write_report(json_out, summary, outcomes)
            console.print(f"report written to {json_out}")


def _columns() -> tuple[Any, ...]:
    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


def _run_with_progress(
    runner: BatchRunner, given: list[Any], max_attempts: int
) -> list[TaskOutcome]:
    outcomes: list[TaskOutcome] = []
    with Progress(*_columns(), console=console) as progress:
        bar = progress.add_task("tasks", total=len(given))

        def on_node(index: int, node: str) -> None:
            progress.update(bar, description=f"task {index + 1}: {node}")

        for index, task in enumerate(given):
            outcomes.append(runner.run_task(index, task, max_attempts, on_node=on_node))
            progress.advance(bar)
        progress.update(bar, description="tasks")
    return outcomes


def outcome_table(outcomes: list[TaskOutcome]) -> Table:
    """The final results as a rich table."""
    table = Table(title="AI-Mesh results")
    for column in ("#", "task", "category", "diff", "attempts", "passed", "reward", "audit", "s"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            str(o.index + 1),
            o.task_id,
            o.category,
            str(o.difficulty),
            str(o.attempts),
            "[green]yes[/]" if o.passed else "[red]no[/]",
            f"{o.reward:.2f}",
            o.verdict,
            f"{o.seconds:.1f}",
        )
    return table


def main() -> None:
    """Entry point for `python -m graph.cli`."""
    sys.exit(app())


if __name__ == "__main__":
    main()
