"""DeliveryLedger: processed keys and in-flight streams in one SQLite file, shared by processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kafka_edges.codec import WireRecord
from kafka_edges.ledger import DeliveryLedger


def test_processed_keys_survive_reopening_and_are_scoped(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with DeliveryLedger(path) as ledger:
        ledger.mark("consumer", ("run", "task", 1))
        ledger.mark("consumer", ("run", "task", 1))  # idempotent
    with DeliveryLedger(path) as reopened:  # a restarted worker
        assert reopened.seen("consumer", ("run", "task", 1))
        assert not reopened.seen("sandbox", ("run", "task", 1))
        assert not reopened.seen("consumer", ("run", "task", 2))
        assert reopened.processed_count() == 1


def test_another_process_sees_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with DeliveryLedger(path) as ledger:
        ledger.mark("reviewer", ("r1", "t1", 0))
        code = (
            "import sys; from kafka_edges.ledger import DeliveryLedger as L; "
            f"l = L({str(path)!r}); print(l.seen('reviewer', ('r1', 't1', 0))); "
            "l.mark('reviewer', ('r2', 't2', 0))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "True", done.stderr
        assert ledger.seen("reviewer", ("r2", "t2", 0))


def test_in_flight_keeps_the_last_record_of_each_unfinished_stream(tmp_path: Path) -> None:
    with DeliveryLedger(tmp_path / "ledger.sqlite") as ledger:
        first = WireRecord(key=b"t1", value=b'{"n": 1}', headers=[("run_id", b"r1")])
        second = WireRecord(key=b"t1", value=b'{"n": 2}', headers=[("run_id", b"r1")])
        ledger.record_in_flight("r1", "ai_topic", first)
        ledger.record_in_flight("r1", "ai_solutions", second)
        ledger.record_in_flight("r2", "ai_requests", first)
        ledger.record_in_flight("r3", "ai_reports", first, done=True)
        ledger.finish("r2")
        pending = ledger.in_flight()
        assert [(p.stream, p.topic, p.record) for p in pending] == [("r1", "ai_solutions", second)]
        assert ledger.prune(3600.0) == 0  # nothing an hour old
        time.sleep(0.01)
        assert ledger.prune(0.001) == 2  # r2 and r3 (finished) go; r1 stays in flight
        assert [p.stream for p in ledger.in_flight()] == ["r1"]


def test_an_older_record_confirmed_late_does_not_replace_a_newer_one(tmp_path: Path) -> None:
    """Workers confirm out of order: the producer's worker may record its output after the
    consumer's worker recorded the next step of the same run (a lost task, seen under load)."""
    ledger = DeliveryLedger(tmp_path / "ledger.sqlite")
    newer = WireRecord(key=b"t", value=b"solution", headers=[])
    older = WireRecord(key=b"t", value=b"task", headers=[])
    ledger.record_in_flight("run-1", "ai_solutions", newer, progress=2)
    ledger.record_in_flight("run-1", "ai_topic", older, progress=1)
    [kept] = ledger.in_flight()
    assert (kept.topic, kept.record.value) == ("ai_solutions", b"solution")


def test_the_mesh_counts_steps_behind_each_transition() -> None:
    from graph.node_worker import steps_taken
    from graph.state import Attempt, MeshState, Task
    from graph.wire import ReportMessage, SolutionMessage, TaskMessage, TaskRequest

    task = Task(statement="s", signature="def f()", entry_point="f", tests=[])
    one = MeshState(task=task, attempts=[Attempt(number=1, code="")])
    two = MeshState(task=task, attempts=[Attempt(number=1, code=""), Attempt(number=2, code="")])
    steps = [
        steps_taken(TaskRequest.from_state(MeshState(), source="feed")),
        steps_taken(TaskMessage.from_state(MeshState(task=task), source="producer")),
        steps_taken(SolutionMessage.from_state(one, source="consumer")),
        steps_taken(TaskMessage.from_state(one, source="sandbox")),
        steps_taken(SolutionMessage.from_state(two, source="consumer")),
        steps_taken(ReportMessage.from_state(two, source="supervisor")),
    ]
    assert steps == [0, 1, 2, 3, 4, 7]


def test_a_transaction_writes_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    record = WireRecord(b"task-1", b"{}", [("worker", b"w1")])
    with DeliveryLedger(path) as ledger:
        with ledger.transaction():
            ledger.mark("consumer", ("run-1", "task-1", 0))
            ledger.record_in_flight("run-1", "ai_solutions", record, progress=2)
        try:
            with ledger.transaction():
                ledger.mark("consumer", ("run-2", "task-2", 0))
                raise RuntimeError("the batch broke")
        except RuntimeError:
            pass
    with DeliveryLedger(path) as reopened:
        assert reopened.seen("consumer", ("run-1", "task-1", 0))
        assert not reopened.seen("consumer", ("run-2", "task-2", 0))
        assert [f.record for f in reopened.in_flight()] == [record]


def test_a_stale_stream_is_taken_by_one_sweeper_once_per_period(tmp_path: Path) -> None:
    """Two processes sweeping one file: each stale stream goes to one of them; a stream that
    moved, is finished, or is held by a worker's lease is not stale."""
    path = tmp_path / "ledger.sqlite"
    record = WireRecord(key=b"t", value=b"v", headers=[("run_id", b"r")])
    with DeliveryLedger(path) as one, DeliveryLedger(path) as other:
        for stream in ("lost", "held", "done"):
            one.record_in_flight(stream, "ai_topic", record, done=stream == "done")
        time.sleep(0.05)
        cutoff = time.time()
        with one.leases(renew_every_s=0.01) as held:
            held.hold("held")
            time.sleep(0.05)  # renewed meanwhile
            taken = one.take_stale(not_after=cutoff)
            assert other.take_stale(not_after=cutoff) == []  # "lost" taken: its time is now
            # a later cutoff takes "lost" again, never "held": it is leased
            assert [f.stream for f in other.take_stale(not_after=time.time())] == ["lost"]
        assert [(f.stream, f.topic, f.record) for f in taken] == [("lost", "ai_topic", record)]
        # the lease released: "held" is stale too (it has not moved since the cutoff)
        assert [f.stream for f in one.take_stale(not_after=time.time())] == ["held", "lost"]


def test_a_lease_whose_holder_died_lapses(tmp_path: Path) -> None:
    """A worker killed while holding a lease does not keep its run from recovery for long."""
    path = tmp_path / "ledger.sqlite"
    record = WireRecord(key=b"t", value=b"v", headers=[])
    with DeliveryLedger(path) as ledger:
        ledger.record_in_flight("run", "ai_topic", record)
        code = (
            "import os, time; from kafka_edges.ledger import DeliveryLedger as L; "
            f"l = L({str(path)!r}); held = l.leases(renew_every_s=1.0, write_after_s=0.1); "
            "held.hold('run'); time.sleep(0.5); "
            "os._exit(0)"  # dies holding it
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert ledger.take_stale(not_after=time.time()) == []  # held (for 3 renewals)
        time.sleep(3.5)
        assert [f.stream for f in ledger.take_stale(not_after=time.time())] == ["run"]


def test_finished_gives_the_last_record_of_the_finished_streams_asked_for(tmp_path: Path) -> None:
    with DeliveryLedger(tmp_path / "ledger.sqlite") as ledger:
        report = WireRecord(key=b"t", value=b"report", headers=[])
        ledger.record_in_flight("r1", "ai_reports", report, done=True)
        ledger.record_in_flight("r2", "ai_topic", WireRecord(key=b"t", value=b"task", headers=[]))
        ledger.record_in_flight("r3", "ai_reports", report, done=True)
        finished = ledger.finished(["r1", "r2", "unknown"])
        assert [(f.stream, f.record.value) for f in finished] == [("r1", b"report")]
