"""The delivery ledger in Postgres (AIMESH_DATABASE_URL): one ledger for every host.

Hosts are simulated by separate processes (and connections) on one throw-away Postgres server:
a key marked on one is seen on the other, a lease blocks both, a stale run is claimed once in
the whole mesh, and a server that restarts or is away for 20 s loses nothing and repeats nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.database import DatabaseUnavailable
from foundation.errors import InfrastructureError
from foundation.postgres_server import PostgresMissing, ThrowAwayPostgres
from foundation.settings import Settings
from kafka_edges.codec import WireRecord
from kafka_edges.ledger import DeliveryLedger

RECORD = WireRecord(key=b"task", value=b'{"step": 1}', headers=[("run_id", b"r")])


def ledger_at(url: str) -> DeliveryLedger:
    return DeliveryLedger.for_settings(Settings(database_url=url))


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryLedger]:
    """The same ledger on each engine."""
    if request.param == "sqlite":
        opened = DeliveryLedger.for_settings(Settings(data_dir=tmp_path))
    else:
        opened = ledger_at(request.getfixturevalue("postgres_url"))
    with opened:
        yield opened


@pytest.fixture
def own_postgres() -> Iterator[ThrowAwayPostgres]:
    """A server of the test's own, to stop and restart."""
    try:
        server = ThrowAwayPostgres()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def test_both_engines_keep_keys_streams_and_leases_alike(ledger: DeliveryLedger) -> None:
    ledger.mark("consumer", ("run", "task", 1))
    ledger.mark("consumer", ("run", "task", 1), ("run", "task", 3))  # idempotent, several
    assert ledger.seen("consumer", ("run", "task", 1))
    assert ledger.seen("consumer", ("run", "task", 3))
    assert not ledger.seen("sandbox", ("run", "task", 1))
    newer = WireRecord(key=b"t", value=b"solution", headers=[("h", b"\x00\xff")])
    ledger.record_in_flight("r1", "ai_solutions", newer, progress=2)
    ledger.record_in_flight("r1", "ai_topic", RECORD, progress=1)  # older, confirmed late
    ledger.record_in_flight("r2", "ai_reports", RECORD, done=True)
    assert [(f.stream, f.topic, f.record) for f in ledger.in_flight()] == [
        ("r1", "ai_solutions", newer)
    ]
    assert [f.stream for f in ledger.finished(["r1", "r2", "r3"])] == ["r2"]
    with ledger.leases(write_after_s=0.05) as held:
        held.hold("r1")
        time.sleep(0.3)  # written
        assert ledger.take_stale(time.time() + 1) == []  # leased
    assert [f.stream for f in ledger.take_stale(time.time() + 1)] == ["r1"]
    assert ledger.take_stale(time.time() - 5) == []  # claimed: its time is now
    with ledger.transaction():
        ledger.mark("consumer", ("run", "task", 2))
        ledger.finish("r1")
    assert ledger.in_flight() == []
    assert ledger.prune(0.0) == 5


def test_a_key_marked_on_one_host_is_seen_on_the_other(postgres_url: str) -> None:
    with ledger_at(postgres_url) as host_a:
        host_a.mark("reviewer", ("r1", "t1", 0))
        code = (
            "from foundation.settings import Settings; from kafka_edges.ledger import DeliveryLedger;"
            f"b = DeliveryLedger.for_settings(Settings(database_url={postgres_url!r}));"
            "print(b.seen('reviewer', ('r1', 't1', 0))); b.mark('reviewer', ('r2', 't2', 0))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.stdout.strip() == "True", done.stderr
        assert host_a.seen("reviewer", ("r2", "t2", 0))


def test_a_lease_taken_on_one_host_blocks_every_host(postgres_url: str) -> None:
    with ledger_at(postgres_url) as host_a, ledger_at(postgres_url) as host_b:
        host_a.record_in_flight("run-1", "ai_topic", RECORD)
        with host_a.leases(write_after_s=0.05) as held:
            held.hold("run-1")
            time.sleep(0.3)  # written
            assert host_b.take_stale(time.time() + 1) == []
        [taken] = host_b.take_stale(time.time() + 1)
        assert taken.stream == "run-1"


SWEEPER = """
import json, sys, time
from foundation.settings import Settings
from kafka_edges.ledger import DeliveryLedger
ledger = DeliveryLedger.for_settings(Settings(database_url=sys.argv[1]))
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
taken = []
while time.time() < start + 2.0:
    taken += [f.stream for f in ledger.take_stale(start)]
print(json.dumps(taken))
"""


def test_two_hosts_racing_for_the_same_stale_runs_take_each_once(postgres_url: str) -> None:
    """Four sweeping processes (two per host), 300 stale runs: each run is re-published by one
    process of the whole mesh, once."""
    with ledger_at(postgres_url) as ledger:
        for i in range(300):
            ledger.record_in_flight(f"run-{i:03d}", "ai_topic", RECORD)
    start = time.time() + 3.0
    sweepers = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEPER, postgres_url, str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    claims = [json.loads(p.communicate(timeout=60)[0]) for p in sweepers]
    everything = [run for claim in claims for run in claim]
    print(f"claims per sweeper: {[len(claim) for claim in claims]}")  # who wins is the race's
    assert sorted(everything) == [f"run-{i:03d}" for i in range(300)]  # each once, none lost


def test_a_claim_in_progress_on_one_host_is_skipped_by_the_other(postgres_url: str) -> None:
    """While host A's claim is not committed, host B's sweep neither waits for it nor takes
    the same runs (SKIP LOCKED); A's claim rolled back (A died), B takes them, once."""
    with ledger_at(postgres_url) as host_a, ledger_at(postgres_url) as host_b:
        for i in range(10):
            host_a.record_in_flight(f"run-{i}", "ai_topic", RECORD)
        cutoff = time.time()
        with pytest.raises(KeyError), host_a.transaction():
            assert len(host_a.take_stale(cutoff)) == 10
            began = time.monotonic()
            assert host_b.take_stale(cutoff) == []
            assert time.monotonic() - began < 5.0  # not blocked on A's locks
            raise KeyError("host A dies before committing its claim")
        assert len(host_b.take_stale(cutoff)) == 10
        assert host_a.take_stale(cutoff) == []


def test_a_restart_of_the_server_loses_nothing(own_postgres: ThrowAwayPostgres) -> None:
    url = own_postgres.new_database("mesh")
    with ledger_at(url) as ledger:
        ledger.mark("consumer", ("r", "t", 1))
        own_postgres.restart()  # every session is cut
        ledger.mark("consumer", ("r", "t", 2))  # reconnects
        ledger.record_in_flight("r", "ai_topic", RECORD)
        assert ledger.processed_count() == 2
        assert [f.stream for f in ledger.in_flight()] == ["r"]


def test_a_server_away_for_20_s_is_waited_for(own_postgres: ThrowAwayPostgres) -> None:
    url = own_postgres.new_database("mesh")
    with ledger_at(url) as ledger:
        ledger.mark("consumer", ("r", "t", 1))
        own_postgres.stop()
        back = threading.Timer(20.0, own_postgres.start)
        back.start()
        began = time.monotonic()
        ledger.mark("consumer", ("r", "t", 2))  # waits, with backoff, for the server
        waited = time.monotonic() - began
        back.join()
        assert 19.0 < waited < 40.0
        assert ledger.processed_count() == 2


def test_a_server_away_for_too_long_is_an_infrastructure_error(
    own_postgres: ThrowAwayPostgres,
) -> None:
    url = own_postgres.new_database("mesh")
    with ledger_at(url) as ledger:
        ledger._db.retry_s = 1.0
        own_postgres.stop()
        with pytest.raises(DatabaseUnavailable, match="did not answer") as caught:
            ledger.seen("consumer", ("r", "t", 1))
        assert isinstance(caught.value, InfrastructureError)
        assert "\n" not in str(caught.value)
