"""`aimesh broker`, `aimesh worker`, `aimesh feed`, `aimesh recover` (the root `app.cli.main`
loads each on use).

Every broker problem is reported as one readable line on stderr (exit code 2).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated, TypeVar

import typer
from confluent_kafka.admin import AdminClient

from app.cli.common import (
    BootstrapOption,
    DataDirOption,
    broker_settings,
    count_option,
    fail,
    settings_with,
)
from app.cli.server import server_intake
from app.distributed import READY_LINE, await_reports
from app.services import recorded_step
from foundation.errors import InfrastructureError
from foundation.settings import Settings
from graph.datasets import DATASET_HELP, HUMANEVAL, dataset_tasks
from graph.kafka_sink import KafkaEdgeSink
from graph.node_worker import MeshWorkers, NodeWorker, WorkerError, WorkerOptions
from graph.routing import NODES
from graph.state import MeshState, Task
from graph.topics import ALL_TOPICS
from graph.wire import ReportMessage
from kafka_edges.admin import DEFAULT_PARTITIONS, ensure_topics
from kafka_edges.broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    broker_for,
    check_reachable,
)
from kafka_edges.config import common_config, with_logger
from kafka_edges.errors import BrokerError
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.publisher import PublishError
from kafka_edges.recovery import republish_in_flight
from sandbox import SandboxError

app = typer.Typer(
    help="Kafka edges: the embedded broker and the node workers.", no_args_is_help=True
)

ROLE_CHOICES = (*NODES, "all")
Workers = TypeVar("Workers", NodeWorker, MeshWorkers)


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@app.command("broker")
def broker_command(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: a free one)")] = 0,
    advertised_host: Annotated[
        str | None, typer.Option(help="host name clients should use (default: --host)")
    ] = None,
    partitions: Annotated[int, typer.Option(help="partitions per mesh topic")] = DEFAULT_PARTITIONS,
    port_wait: Annotated[
        float, typer.Option(help="seconds to keep retrying a --port that is in use")
    ] = 60.0,
) -> None:
    """Start the embedded Kafka broker (tansu, in memory), create the topics, run until Ctrl-C.

    With `--port`, a port still held (e.g. by a broker that is shutting down) is retried with
    backoff for up to `--port-wait` seconds, with one line saying so.
    """
    try:
        broker = _start_broker(host, port, advertised_host, port_wait)
    except BrokerError as exc:
        raise fail(str(exc)) from None
    try:
        settings = Settings.load()
        admin = AdminClient(with_logger(common_config(settings, bootstrap=broker.bootstrap)))
        ensure_topics(admin, ALL_TOPICS, partitions, prefix=settings.kafka_topic_prefix)
        typer.echo(f"Kafka broker (embedded tansu, in memory) on {broker.bootstrap}")
        typer.echo(f"export AIMESH_KAFKA_BOOTSTRAP={broker.bootstrap}")
        typer.echo("Ctrl-C to stop (all messages are lost: memory storage).")
        typer.echo("After restarting it, `aimesh recover` re-publishes the runs in flight.")
        _wait_for_signal()
    finally:
        broker.stop()


def _start_broker(
    host: str, port: int, advertised_host: str | None, port_wait_s: float
) -> EmbeddedBroker:
    deadline = time.monotonic() + port_wait_s
    delay = 0.5
    announced = False
    while True:
        try:
            return EmbeddedBroker(host, port, advertised_host=advertised_host).start()
        except EmbeddedBrokerError as exc:
            if not port or "in use" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            if not announced:
                typer.echo(f"port {port} is in use; retrying for up to {port_wait_s:g} s", err=True)
                announced = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@app.command("recover")
def recover_command(
    bootstrap: BootstrapOption = None,
    older_than: Annotated[
        float, typer.Option(help="only runs whose last transition is at least this old (s)")
    ] = 0.0,
    settle: Annotated[
        float,
        typer.Option(
            help="seconds to wait first, so running workers notice the new broker and rejoin "
            "its groups (at their next heartbeat, then about half a session timeout)"
        ),
    ] = 3.0,
    data_dir: DataDirOption = None,
) -> None:
    """Re-publish the last transition of every unfinished run from the delivery ledger.

    Run it after a memory-only broker restarted (and the workers rejoined): the tasks in flight
    when it died continue; a transition that was not lost is recognised as a duplicate.
    """
    settings = broker_settings(bootstrap, data_dir=data_dir)
    try:
        admin = AdminClient(with_logger(common_config(settings)))
        ensure_topics(admin, ALL_TOPICS, prefix=settings.kafka_topic_prefix)
        time.sleep(max(0.0, settle))
        with DeliveryLedger.for_settings(settings) as ledger:
            count = republish_in_flight(settings, ledger, older_than_s=older_than)
    except (BrokerError, PublishError, InfrastructureError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"re-published {count} in-flight transition(s) from {ledger.path}")


@app.command("worker")
def worker_command(
    role: Annotated[str, typer.Option(help=f"node to run: {', '.join(ROLE_CHOICES)}")],
    concurrency: Annotated[int, typer.Option(min=1, help="group members in this process")] = 1,
    bootstrap: BootstrapOption = None,
    partitions: Annotated[
        int, typer.Option(help="partitions for topics this worker creates")
    ] = DEFAULT_PARTITIONS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every message")] = False,
    recover: Annotated[
        bool,
        typer.Option(
            help="re-publish from the delivery ledger the runs the broker lost: all in flight "
            "when it forgets its topics (a restarted memory-only broker), and any that has not "
            "moved for AIMESH_KAFKA_STALE_RUN_S"
        ),
    ] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Run a node as a Kafka consumer-group worker (`--role all`: every node, in one process).

    With `--role all` and no bootstrap configured, an embedded broker is started.
    """
    if role not in ROLE_CHOICES:
        raise fail(f"unknown role {role!r}; expected one of {', '.join(ROLE_CHOICES)}")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = settings_with(kafka_bootstrap=bootstrap, data_dir=data_dir)
    try:
        if role == "all":
            with broker_for(settings, topics=ALL_TOPICS, partitions=partitions) as info:
                if info.embedded:
                    typer.echo(f"embedded Kafka broker on {info.bootstrap}")
                typer.echo(f"workers for {', '.join(NODES)} (x{concurrency}); Ctrl-C to stop")
                step = recorded_step(info.settings)
                options = WorkerOptions(concurrency=concurrency, partitions=partitions)
                mesh = MeshWorkers(NODES, info.settings, step, options, recover_lost_runs=recover)
                _start_and_announce(mesh).run()
            return
        if not settings.kafka_bootstrap:
            raise fail(
                "no Kafka bootstrap servers configured: set AIMESH_KAFKA_BOOTSTRAP or pass "
                "--bootstrap (start a broker with `aimesh broker`)"
            )
        # the broker first: building the services (model, memory) takes seconds
        check_reachable(settings.kafka_bootstrap, settings.kafka_config)
        step = recorded_step(settings, nodes=(role,))
        options = WorkerOptions(concurrency=concurrency, partitions=partitions)
        worker = NodeWorker(role, settings, step, options, recover_lost_runs=recover)
        typer.echo(
            f"{role} worker (x{concurrency}) on {worker.bootstrap}, group {worker.group_id}; Ctrl-C to stop"
        )
        stats = _start_and_announce(worker).run()
        typer.echo(f"{role} worker stopped: {stats.snapshot()}")
    except (InfrastructureError, SandboxError, WorkerError) as exc:
        raise fail(str(exc)) from None


def _start_and_announce(workers: Workers) -> Workers:
    """Start the workers and print the ready line once every member has its first partition
    assignment (the supervisor of `run --distributed` waits for it)."""
    workers.start()
    if workers.wait_joined(timeout_s=120.0):
        typer.echo(READY_LINE)
    return workers


@app.command("feed")
def feed_command(
    count: Annotated[int, count_option("tasks to send")] = 1,
    bootstrap: BootstrapOption = None,
    server: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="send ready tasks to the intake of the LangGraph server at URL (`aimesh "
            "server`; its broker is asked of it), one server run each, instead of task requests "
            "to the producer workers",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help=f"{DATASET_HELP} [default: the producer invents tasks; with --server, humaneval]"
        ),
    ] = None,
    first_index: Annotated[int, typer.Option(help="task_index of the first request")] = 0,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the supervisors' reports (0: don't)")
    ] = 0.0,
    data_dir: DataDirOption = None,
) -> None:
    """Send tasks to the producer workers, or with --server to the LangGraph server's intake;
    optionally wait for their reports.

    Task requests go to the producer workers (`ai_requests`); with `--server URL`, ready tasks to
    the intake (`ai_server_tasks`) of the LangGraph server at URL, one server run each. Reports
    are read from `ai_reports` across broker resets, or taken from the delivery ledger where the
    broker lost a report it had confirmed.
    """
    if server:
        bootstrap, prefix = server_intake(server)
        settings = broker_settings(bootstrap, data_dir=data_dir, kafka_topic_prefix=prefix)
    else:
        settings = broker_settings(bootstrap, data_dir=data_dir)
    chosen = dataset or (HUMANEVAL if server else None)
    tasks: list[Task | None] = (
        list(dataset_tasks(chosen, limit=first_index + count)[first_index:])
        if chosen
        else [None] * count
    )
    states = [
        MeshState(task_index=first_index + i, task=task, max_attempts=settings.max_attempts)
        for i, task in enumerate(tasks)
    ]
    try:
        runs = _send_to_server(settings, states) if server else _send_requests(settings, states)
    except (BrokerError, PublishError) as exc:
        raise fail(str(exc)) from None
    where = "the LangGraph server's intake" if server else "the producer workers"
    typer.echo(f"sent {len(runs)} task(s) to {where}: {', '.join(runs)}")
    if wait <= 0:
        return

    def report_line(message: ReportMessage) -> None:
        task = message.state.task
        typer.echo(
            f"{message.run_id}: {message.status} task={task.task_id if task else '-'} "
            f"verdict={message.verdict} reward={message.reward} attempts={message.attempt}"
        )

    pending = await_reports(settings, set(runs), report_line, timeout_s=wait)
    if pending:
        raise fail(
            f"no report within {wait:g} s for {len(pending)} task(s): {', '.join(sorted(pending))}"
        )


def _send_requests(settings: Settings, states: list[MeshState]) -> list[str]:
    """Task requests for the producer workers, each recorded in the delivery ledger (so one the
    broker loses is re-published); their run ids."""
    with (
        DeliveryLedger.for_settings(settings) as ledger,
        KafkaEdgeSink(settings, ledger=ledger) as sink,
    ):
        return [sink.feed_request(state).run_id for state in states]


def _send_to_server(settings: Settings, states: list[MeshState]) -> list[str]:
    """Ready tasks for the LangGraph server's intake (the server runs them itself); run ids."""
    with KafkaEdgeSink(settings) as sink:
        return [sink.feed_server_task(state).run_id for state in states]


if __name__ == "__main__":  # pragma: no cover
    app()
