"""`aimesh topics`, `aimesh tail` and `aimesh replay` against the real embedded broker (tansu), on
the transitions of real in-process runs (scripted LLM: a test double)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from conftest import Mesh
from typer.testing import CliRunner

from app.cli.main import app
from app.services import build_context
from app.task_story import story_of
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.kafka_sink import KafkaEdgeSink
from graph.state import MeshState, Task
from graph.topics import AI_REPORTS, AI_REVIEWS, AI_SOLUTIONS, AI_TOPIC
from graph.wire import MODEL_BY_TOPIC
from kafka_edges.config import consumer_config, with_logger
from kafka_edges.reader import TopicReader
from kafka_edges.topic_stats import topic_stats
from nodes import NODE_FUNCTIONS

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Published:
    """Finished runs whose transitions are on the test's topics."""

    settings: Settings
    env: dict[str, str]
    runs: list[MeshState]

    def run(self, state: MeshState) -> MeshState:
        """Run one task through the graph in process, publishing every transition."""
        context = build_context(self.settings, use_memory=False)
        with KafkaEdgeSink(self.settings) as sink:
            graph = compile_mesh(NODE_FUNCTIONS, edge_sink=sink)
            final = MeshState.model_validate(graph.invoke(state, context=context))
        self.runs.append(final)
        return final


@pytest.fixture
def published(mesh: Mesh, tmp_path: Path) -> Published:
    """Two scripted runs on the test's topics: `add` (solved at once), `reverse_words` (a retry)."""
    settings = mesh.settings.model_copy(update={"kafka_topic_prefix": mesh.prefix})
    env = {
        "AIMESH_KAFKA_BOOTSTRAP": mesh.bootstrap,
        "AIMESH_KAFKA_TOPIC_PREFIX": mesh.prefix,
        "AIMESH_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    runs = Published(settings, env, [])
    for index in range(2):
        runs.run(MeshState(task_index=index))
    assert [len(r.attempts) for r in runs.runs] == [1, 2]
    return runs


def aimesh(published: Published, *args: str) -> tuple[int, str, str]:
    result = CliRunner(env=published.env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def row_of(table: str, topic: str) -> list[str]:
    """The cells of `topic`'s row in a printed table (cells apart by two spaces or more)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == topic:
            return cells
    raise AssertionError(f"no row for {topic} in:\n{table}")


def test_topics_counts_messages_and_a_groups_lag(published: Published, mesh: Mesh) -> None:
    group = f"lag-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(with_logger(consumer_config(published.settings, group)))
    try:
        consumer.subscribe([mesh.topic(AI_TOPIC)])
        message = None
        while message is None or message.error() is not None:
            message = consumer.poll(1.0)
        consumer.commit(message, asynchronous=False)  # one record of ai_topic handled
    finally:
        consumer.close()

    code, out, err = aimesh(published, "topics")
    assert code == 0, err
    # ai_topic: two new tasks and one retry; one solution per attempt; one verdict, review
    # and report per task
    assert row_of(out, AI_TOPIC)[1:] == ["2", "3", f"{group} (2)"]
    assert row_of(out, AI_SOLUTIONS)[1:3] == ["2", "3"]
    assert row_of(out, AI_REVIEWS)[1:3] == ["2", "2"]
    assert row_of(out, AI_REPORTS)[1:] == ["2", "2", "-"]


def test_message_counts_include_records_batched_together(mesh: Mesh) -> None:
    """tansu's high watermark stops at the last batch's first record; the count does not."""
    producer = Producer({"bootstrap.servers": mesh.bootstrap, "linger.ms": 200})
    for i in range(5):  # one flush: one batch
        producer.produce(mesh.topic(AI_REVIEWS), key=b"same-key", value=f"v{i}".encode())
    producer.flush(10)
    settings = mesh.settings.model_copy(update={"kafka_topic_prefix": mesh.prefix})
    with TopicReader(AI_REVIEWS, settings) as reader:
        held = len(reader.read_to_end(timeout_s=20))
    counted = {s.name: s.messages for s in topic_stats(settings)}
    assert held == 5 and counted[AI_REVIEWS] == 5


def test_tail_prints_the_messages_pretty_and_filters_by_task(published: Published) -> None:
    add, reverse = published.runs
    code, out, err = aimesh(published, "tail", AI_SOLUTIONS, "--from-beginning", "-n", "3")
    assert code == 0, err
    assert out.count(f"{AI_SOLUTIONS} p") == 3
    assert "def add(" in out and out.count("def reverse_words(") == 2

    assert reverse.task is not None and add.task is not None
    only = aimesh(
        published, "tail", AI_SOLUTIONS, "--from-beginning", "--task", reverse.task.task_id,
        "-n", "2", "--json",
    )  # fmt: skip
    assert only[0] == 0, only[2]
    lines = [json.loads(line) for line in only[1].splitlines()]
    assert [m["attempt"] for m in lines] == [1, 2]
    assert {m["task_id"] for m in lines} == {reverse.task.task_id}


def test_tail_of_an_unknown_topic_lists_the_topics(published: Published) -> None:
    code, _, err = aimesh(published, "tail", "ai_nothing")
    assert code == 2
    assert err.startswith("error: unknown topic 'ai_nothing'") and "ai_reports" in err


def test_tail_stays_live_until_the_count_is_reached(published: Published) -> None:
    env = {**os.environ, **published.env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    tail = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "tail", AI_REPORTS, "--from-beginning", "-n", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert tail.stdout is not None
        seen = 0
        while seen < 2:  # the two reports already on the topic
            line = tail.stdout.readline()
            assert line, tail.stderr.read() if tail.stderr else ""
            seen += line.startswith(f"{AI_REPORTS} p")
        assert tail.poll() is None  # still waiting for a third
        published.run(MeshState(task_index=2))
        out, err = tail.communicate(timeout=120)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    assert out.count(f"{AI_REPORTS} p") == 1 and "status: done" in out


def test_replay_tells_a_finished_tasks_whole_story(published: Published) -> None:
    reverse = published.runs[1]
    assert reverse.task is not None
    code, out, err = aimesh(published, "replay", reverse.task.task_id)
    assert code == 0, err
    assert f"task {reverse.task.task_id} (run {reverse.run_id}): done, reward 1.00" in out
    assert "reverse_words | category strings" in out and reverse.task.statement in out
    first, second = (out.index("attempt 1 ─"), out.index("attempt 2 ─"))
    assert "verdict: failed" in out[first:second] and "verdict: passed" in out[second:]
    assert "reversed(text.split(' '))" in out[second:]
    assert "review ─" in out and "reward 1.00 (correctness 1.00" in out
    assert "report ─" in out and "verdict ok" in out
    timeline = out[out.index("timeline ─") :]
    hops = ["producer", "consumer", "sandbox", "consumer", "sandbox", "reviewer", "supervisor"]
    assert [line.split()[1] for line in timeline.splitlines()[1:]] == hops

    by_run = aimesh(published, "replay", reverse.run_id)
    assert by_run[0] == 0 and f"(run {reverse.run_id})" in by_run[1]


def test_replay_of_an_unknown_task_is_one_line(published: Published) -> None:
    code, out, err = aimesh(published, "replay", "no-such-task")
    assert code == 2 and out == ""
    assert err.startswith("error: no message of task or run 'no-such-task'")
    assert err.count("\n") == 1


def test_replay_picks_the_latest_run_of_a_task_and_names_the_others(
    published: Published,
) -> None:
    """Dataset tasks keep their ids across runs: each run is its own story."""
    task = published.runs[0].task
    assert isinstance(task, Task)
    again = published.run(MeshState(task_index=0, task=task))
    with TopicReader(AI_TOPIC, published.settings, models=MODEL_BY_TOPIC) as reader:
        records = reader.read_to_end(timeout_s=20)
    first = published.runs[0].run_id
    with TopicReader(AI_REPORTS, published.settings, models=MODEL_BY_TOPIC) as reader:
        records += reader.read_to_end(timeout_s=20)
    story = story_of(records, task.task_id)
    assert story.run_id == again.run_id and story.other_runs == [first]
    assert story_of(records, task.task_id, run_id=first).run_id == first


@pytest.mark.parametrize("command", [["topics"], ["tail", AI_TOPIC], ["replay", "x"]])
def test_an_unreachable_broker_is_one_line_and_exit_code_2(
    command: list[str], tmp_path: Path
) -> None:
    env = {"AIMESH_KAFKA_BOOTSTRAP": "127.0.0.1:9", "AIMESH_DATA_DIR": str(tmp_path)}
    result = CliRunner(env=env).invoke(app, command)
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: cannot reach Kafka at 127.0.0.1:9 (127.0.0.1:9: Connection refused)\n"
    )
