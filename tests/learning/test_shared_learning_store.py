"""The learning store in Postgres (AIMESH_DATABASE_URL): one registry and one set of rollouts for
every host. A learning round reads the rollouts of both hosts, and the version it promotes is
what every host's next step uses (two host processes, the scripted model)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services import build_context
from foundation.settings import Settings
from graph.context import MeshContext
from learning.periodic import learner_round, recent_tasks
from nodes.prompts import CONSUMER_SYSTEM, SEED_PROMPTS
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry

C = CONSUMER_SYSTEM
MAGIC = "edge cases"


def test_the_registry_in_postgres_keeps_versions_events_and_rewards(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=postgres_url, data_dir=tmp_path)
    registry = PromptRegistry.for_settings(settings, SEED_PROMPTS)
    first = registry.add_candidate(C, registry.current(C).text + "\nBe brief.")
    second = registry.add_candidate(C, registry.current(C).text + "\nBe exact.")
    assert (first.version, second.version) == ("v1.1", "v1.2")
    registry.promote(C, first.version)
    assert registry.record_reward(C, first.version, 1.0)
    assert registry.record_reward(C, first.version, 0.0)
    stats = registry.get(C, first.version)
    assert (stats.n, stats.mean, round(stats.std, 3)) == (2, 0.5, 0.707)
    assert [v.version for v in registry.history(C)] == ["v1", "v1.1", "v1.2"]
    assert registry.rollback(C).version == "v1"
    assert [e.event for e in registry.events(C)][-2:] == ["rolled_back", "reactivated"]
    # another host opening the same database sees it all, and its seeding changes nothing
    elsewhere = settings.model_copy(update={"data_dir": tmp_path / "b"})
    other = PromptRegistry.for_settings(elsewhere, SEED_PROMPTS)
    assert other.current(C).version == "v1"
    assert other.get(C, first.version).status == "rejected"
    assert not (tmp_path / "learning.sqlite").exists()


HOST = """
import pathlib, sys, time
from app.services import build_context, recorded
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.checkpoint import memory_checkpointer
from graph.runner import BatchRunner
from nodes import NODE_FUNCTIONS
from nodes.prompts import CONSUMER_SYSTEM
url, data, first, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
settings = Settings(
    llm="scripted", data_dir=data, database_url=url, review_with_llm=False, max_attempts=1,
    sandbox_timeout_s=60.0,
)
context, recorder = recorded(build_context(settings, use_memory=False))
runner = BatchRunner(compile_mesh(NODE_FUNCTIONS, memory_checkpointer(), edge_sink=recorder), context)
def step(index, run_id):
    runner.run_task(index, run_id=run_id)
    state = runner.state_of(index)
    print(state.task.task_id, state.prompt_versions[CONSUMER_SYSTEM], flush=True)
for index in range(first, first + 3):
    step(index, f"task-{index}")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.1)
step(first + 3, f"after-{first}")
"""


@pytest.fixture
def hosts(postgres_url: str, tmp_path: Path) -> Iterator[tuple[list[subprocess.Popen[str]], Path]]:
    """Two host processes, each with its own data dir, sharing only the database: each runs
    three tasks (host A the catalogue's first three, host B the next three), says `ready`, and
    runs one more task once the `go` file exists. The six tasks' ids are fixed, so the learner's
    hash split is too: merge_intervals, add and palindrome train; reverse_words, to_roman and fib
    (two of them tricky for the seed prompt) validate."""
    go = tmp_path / "go"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", HOST, postgres_url, str(tmp_path / name), str(first), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, first in (("host-a", 0), ("host-b", 3))
    ]
    try:
        yield started, go
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_one_round_learns_from_both_hosts_and_both_use_what_it_promotes(
    postgres_url: str,
    tmp_path: Path,
    hosts: tuple[list[subprocess.Popen[str]], Path],
    sensitive_services: MeshContext,
) -> None:
    processes, go = hosts
    before: list[list[str]] = []
    for process in processes:
        assert process.stdout is not None
        lines = [process.stdout.readline().split() for _ in range(4)]
        assert lines[-1] == ["ready"], lines
        before.append(lines[:3])
    assert {version for host in before for _, version in host} == {"v1"}

    # the learner runs on a third machine of the mesh, with the prompt-sensitive double
    settings = Settings(
        llm="scripted", data_dir=tmp_path / "learner", database_url=postgres_url,
        review_with_llm=False, llm_temperature=0.0, max_attempts=1, sandbox_timeout_s=60.0,
    )  # fmt: skip
    services = build_context(settings, use_memory=False)
    services = dataclasses.replace(services, llm=sensitive_services.llm)
    assert services.registry is not None
    pool = recent_tasks(services.registry.db)
    assert {task.task_id for task in pool} == {task_id for host in before for task_id, _ in host}
    # 3 + 3 tasks: more than either host ran; 3 validation tasks are never significant: alpha=1
    options = {"batch": 3, "arms": 3, "alpha": 1.0}
    [report] = learner_round(services, services.registry, train=3, val=3, learner_options=options)()
    assert report.decision == "promoted", report
    promoted = services.registry.current(C)
    assert MAGIC in promoted.text and promoted.version == report.active_after

    go.touch()
    for process in processes:
        assert process.stdout is not None
        _task_id, version = process.stdout.readline().split()
        assert version == promoted.version
        assert process.wait(timeout=120) == 0
    mesh_runs = LearningDB.for_settings(settings).query(
        "SELECT COUNT(*) AS n FROM rollouts WHERE source = 'mesh'"
    )
    assert mesh_runs[0]["n"] == 8
