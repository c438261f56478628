"""`aimesh run --distributed`: `--workers N` worker PROCESSES per node, supervised; tasks fed
through Kafka, results read back from the supervisors' reports.

Supervision: a worker process that exits while the run is going is restarted (one log line on
stderr), up to a restart budget per role; past it, the run fails at once with one line naming the
role and the exit status. The run never waits silently on a dead worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient

from foundation.errors import InfrastructureError
from foundation.settings import WIRE_VARIABLE, Settings
from graph.kafka_sink import KafkaEdgeSink
from graph.routing import NODES
from graph.state import MeshState, Task, TaskOutcome
from graph.topics import AI_REPORTS, ALL_TOPICS
from graph.wire import MODEL_BY_TOPIC, ReportMessage
from kafka_edges.admin import DEFAULT_PARTITIONS, ensure_topics
from kafka_edges.codec import MessageDecodeError, decode
from kafka_edges.config import common_config, topic_prefix, with_logger
from kafka_edges.ledger import DeliveryLedger
from kafka_edges.reader import Record, TopicReader
from kafka_edges.recovery import republish_in_flight
from llm.chat import resolve_provider
from llm.local_server import LocalModelServer
from memory.chroma_server import ChromaServer

DEFAULT_RESTART_BUDGET = 3
"""Restarts allowed per role in one run before the run fails."""
READY_LINE = "aimesh-worker-ready"
"""What `aimesh worker` prints on stdout once every member has its first partition assignment."""


class DistributedRunError(InfrastructureError):
    """The workers did not report every task in time, or a role's worker kept dying."""


def partitions_for(per_role: int) -> int:
    """Partitions per topic so that `per_role` workers all get work (tansu cannot add partitions
    later: a topic keeps the count it was created with)."""
    return max(DEFAULT_PARTITIONS, per_role)


@contextlib.contextmanager
def shared_llm_endpoint(settings: Settings) -> Iterator[Settings]:
    """Settings whose LLM every worker process can share: one local model server, not five."""
    if resolve_provider(settings) != "local":
        yield settings
        return
    with LocalModelServer.from_settings(settings) as server:
        yield server.client_settings(settings)


@contextlib.contextmanager
def shared_memory_store(settings: Settings) -> Iterator[Settings]:
    """Settings whose memory every worker process can share: embedded Qdrant admits one
    process, so unless a shared store is configured already, a Chroma server is started."""
    memory = settings.memory
    if not memory.enabled or memory.backend == "chroma":
        yield settings
        return
    with ChromaServer(memory.resolved_dir(settings.data_dir) / "chroma") as server:
        shared = memory.model_copy(
            update={"backend": "chroma", "chroma_host": server.host, "chroma_port": server.port}
        )
        yield settings.model_copy(update={"memory": shared})


def _log(line: str) -> None:
    print(f"aimesh run: {line}", file=sys.stderr, flush=True)


@dataclass
class _Slot:
    """One worker process of a role; `ready` is set once its members joined their group."""

    role: str
    index: int
    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)


def exit_status(code: int) -> str:
    """A process's exit code as a reader wants it: `exit code 3` or `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerSupervisor:
    """`per_role` `aimesh worker --role R` processes for every node, kept running.

    `check()` (called often by whoever waits on the run) restarts a worker that exited, with one
    log line, and raises DistributedRunError once a role has used up its restart budget.
    """

    def __init__(
        self,
        settings: Settings,
        per_role: int,
        *,
        restart_budget: int = DEFAULT_RESTART_BUDGET,
        partitions: int | None = None,
        roles: tuple[str, ...] = NODES,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if per_role < 1:
            raise ValueError("per_role must be at least 1")
        self.settings = settings
        self.per_role = per_role
        self.restart_budget = restart_budget
        self.partitions = partitions or partitions_for(per_role)
        self.roles = roles
        self.log = log or _log
        self.restarts: dict[str, int] = dict.fromkeys(roles, 0)
        self.slots: list[_Slot] = []
        self._env = {**os.environ, WIRE_VARIABLE: settings.to_wire()}
        self._stopping = False

    def _spawn(self, role: str, index: int) -> _Slot:
        command = [
            sys.executable, "-m", "app.cli.main", "worker", "--role", role,
            "--concurrency", "1", "--partitions", str(self.partitions),
        ]  # fmt: skip
        proc = subprocess.Popen(command, env=self._env, stdout=subprocess.PIPE)
        slot = _Slot(role, index, proc)
        threading.Thread(
            target=self._read_stdout, args=(slot,), name=f"aimesh-{role}-{index}-out", daemon=True
        ).start()
        return slot

    @staticmethod
    def _read_stdout(slot: _Slot) -> None:
        """Drain the worker's stdout (so it never blocks) and notice its ready line."""
        assert slot.proc.stdout is not None
        for raw in slot.proc.stdout:
            if raw.decode("utf-8", errors="replace").strip() == READY_LINE:
                slot.ready.set()

    def start(self) -> WorkerSupervisor:
        for role in self.roles:
            for index in range(self.per_role):
                self.slots.append(self._spawn(role, index))
        return self

    @property
    def pids(self) -> dict[str, list[int]]:
        """The current worker process ids per role."""
        result: dict[str, list[int]] = {role: [] for role in self.roles}
        for slot in self.slots:
            result[slot.role].append(slot.proc.pid)
        return result

    def check(self) -> None:
        """Restart every worker that exited; raise once a role is past its restart budget."""
        if self._stopping:
            return
        for position, slot in enumerate(self.slots):
            code = slot.proc.poll()
            if code is None:
                continue
            name = f"{slot.role} worker {slot.index + 1}/{self.per_role} (pid {slot.proc.pid})"
            if self.restarts[slot.role] >= self.restart_budget:
                raise DistributedRunError(
                    f"the {slot.role} worker died ({exit_status(code)}) and its restart budget "
                    f"({self.restart_budget}) is used up: run stopped"
                )
            self.restarts[slot.role] += 1
            self.slots[position] = self._spawn(slot.role, slot.index)
            self.log(
                f"{name} exited ({exit_status(code)}); restarted as pid "
                f"{self.slots[position].proc.pid} "
                f"(restart {self.restarts[slot.role]}/{self.restart_budget} for {slot.role})"
            )

    def wait_ready(
        self, timeout_s: float = 120.0, on_ready: Callable[[int], None] | None = None
    ) -> bool:
        """Wait until every worker has joined its group (supervising meanwhile); `on_ready` is
        told how many are ready whenever that changes."""
        deadline = time.monotonic() + timeout_s
        told = -1
        while time.monotonic() < deadline:
            self.check()
            ready = sum(slot.ready.is_set() for slot in self.slots)
            if on_ready is not None and ready != told:
                on_ready(ready)
                told = ready
            if ready == len(self.slots):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate every worker (SIGTERM, then SIGKILL after 15 s)."""
        self._stopping = True
        for slot in self.slots:
            if slot.proc.poll() is None:
                slot.proc.terminate()
        deadline = time.monotonic() + 15
        for slot in self.slots:
            try:
                slot.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()

    def __enter__(self) -> WorkerSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def worker_processes(
    settings: Settings,
    per_role: int,
    *,
    restart_budget: int = DEFAULT_RESTART_BUDGET,
    partitions: int | None = None,
) -> Iterator[WorkerSupervisor]:
    """Start and supervise `per_role` worker processes for every node, sharing one memory store;
    stop them (and the store) on exit."""
    with contextlib.ExitStack() as stack:
        # The topics exist, with enough partitions, before any worker or reader looks for them.
        assert settings.kafka_bootstrap, "the broker is started (or configured) by the caller"
        admin = AdminClient(with_logger(common_config(settings)))
        ensure_topics(
            admin, ALL_TOPICS, partitions or partitions_for(per_role), prefix=topic_prefix(settings)
        )
        shared = stack.enter_context(shared_memory_store(settings))
        supervisor = WorkerSupervisor(
            shared, per_role, restart_budget=restart_budget, partitions=partitions
        )
        yield stack.enter_context(supervisor)


def collect_reports(
    settings: Settings,
    runs: dict[str, int],
    supervisor: WorkerSupervisor,
    *,
    timeout_s: float,
    on_report: Callable[[TaskOutcome], None] | None = None,
) -> dict[str, TaskOutcome]:
    """One outcome per run id in `runs` (run id -> task index), read as `await_reports` does
    while supervising the workers; stops at `timeout_s`."""
    outcomes: dict[str, TaskOutcome] = {}

    def take(message: ReportMessage) -> None:
        state = message.state
        wall = state.report.wall_time_s if state.report else 0.0
        outcome = TaskOutcome.of(runs[message.run_id], state, seconds=wall)
        outcomes[message.run_id] = outcome
        if on_report is not None:
            on_report(outcome)

    await_reports(settings, set(runs), take, timeout_s=timeout_s, tick=supervisor.check)
    return outcomes


def await_reports(
    settings: Settings,
    run_ids: set[str],
    on_report: Callable[[ReportMessage], None],
    *,
    timeout_s: float,
    tick: Callable[[], None] = lambda: None,
) -> set[str]:
    """Call `on_report` once with the report of each run in `run_ids`, as the reports topic
    shows them (across broker resets: `TopicReader`), until all came or `timeout_s` passed;
    return the runs left without one. `tick` runs between reads. A report the broker lost
    before it was read (a memory-only broker restarted) is taken from the delivery ledger,
    where the supervisor worker recorded it once the broker had confirmed it."""
    pending = set(run_ids)

    def take(message: ReportMessage) -> None:
        if message.run_id in pending:
            pending.discard(message.run_id)
            on_report(message)

    deadline = time.monotonic() + timeout_s
    ledger_checked = time.monotonic()
    with (
        DeliveryLedger.for_settings(settings) as ledger,
        TopicReader(AI_REPORTS, settings, models=MODEL_BY_TOPIC) as reader,
    ):
        while pending and time.monotonic() < deadline:
            tick()
            record: Record | None = reader.poll(0.2)
            message = record.message if record is not None else None
            if isinstance(message, ReportMessage):
                take(message)
            if time.monotonic() - ledger_checked >= LEDGER_REPORTS_EVERY_S:
                ledger_checked = time.monotonic()
                for report in reports_in_ledger(ledger, pending):
                    take(report)
    return pending


LEDGER_REPORTS_EVERY_S = 2.0
"""How often `await_reports` looks in the ledger for reports the topic did not show."""


def reports_in_ledger(ledger: DeliveryLedger, run_ids: set[str]) -> list[ReportMessage]:
    """The final reports the ledger holds for these runs (a run that ended in a dead letter has
    a transition there, not a report: it is left out)."""
    reports: list[ReportMessage] = []
    for finished in ledger.finished(run_ids):
        try:
            reports.append(decode(ReportMessage, finished.record.value))
        except MessageDecodeError:
            continue
    return reports


def feed_tasks(
    settings: Settings, tasks: list[Task | None], first_index: int = 0
) -> dict[str, int]:
    """Publish one task request per entry to the producers, each recorded in the delivery ledger
    the workers share (so a request the broker loses is re-published, see
    `kafka_edges.recovery`); return run id -> task index."""
    with (
        DeliveryLedger.for_settings(settings) as ledger,
        KafkaEdgeSink(settings, origin="feed", ledger=ledger) as sink,
    ):
        return {
            sink.feed_request(
                MeshState(task_index=i, task=task, max_attempts=settings.max_attempts)
            ).run_id: i
            for i, task in enumerate(tasks, start=first_index)
        }


READY_TIMEOUT_S = 120.0
"""How long a distributed run waits for its workers to join their groups before it feeds
anyway (the workers that join later find the requests waiting)."""


@dataclass(frozen=True)
class StartHooks:
    """What a distributed run tells its caller before the first report (each optional)."""

    on_ready: Callable[[int], None] | None = None
    """How many worker processes have joined their groups, whenever that changes."""
    on_fed: Callable[[dict[str, int]], None] | None = None
    """The runs fed (run id -> task index): record them to resume the batch."""


def resend_unfinished(settings: Settings) -> int:
    """Re-publish the last transition of every run the delivery ledger holds unfinished (an
    interrupted batch's, resumed); how many."""
    with DeliveryLedger.for_settings(settings) as ledger:
        return republish_in_flight(settings, ledger)


def run_distributed(
    settings: Settings,
    tasks: list[Task | None],
    *,
    per_role: int = 1,
    timeout_s: float = 1800.0,
    restart_budget: int = DEFAULT_RESTART_BUDGET,
    on_report: Callable[[TaskOutcome], None] | None = None,
    fed: dict[str, int] | None = None,
    hooks: StartHooks | None = None,
) -> list[TaskOutcome]:
    """Feed every task to the producer workers and collect one outcome per task. With `fed` (an
    interrupted batch's runs: run id -> task index) nothing is fed: its unfinished runs are
    re-published from the delivery ledger and every run's outcome collected."""
    told = hooks or StartHooks()
    with worker_processes(settings, per_role, restart_budget=restart_budget) as supervisor:
        supervisor.wait_ready(READY_TIMEOUT_S, on_ready=told.on_ready)
        if fed is None:
            runs = feed_tasks(settings, tasks)
            if told.on_fed is not None:
                told.on_fed(runs)
        else:
            runs = fed
            resend_unfinished(settings)
        outcomes = collect_reports(
            settings, runs, supervisor, timeout_s=timeout_s, on_report=on_report
        )
    if len(outcomes) < len(runs):
        raise DistributedRunError(
            f"only {len(outcomes)} of {len(runs)} tasks were reported within {timeout_s:.0f}s"
        )
    return sorted(outcomes.values(), key=lambda o: o.index)
