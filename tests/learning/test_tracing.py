"""RolloutRecorder as the graph's edge sink: one rollout per run, node and LLM spans, the reward at
the end, persisted in the learning SQLite file; cheap and free of agent-lightning imports."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.edges import FanOutSink, StepRecord
from graph.runner import BatchRunner
from graph.state import MeshState
from learning.rollouts import RolloutRecorder, SpanRecord, load_rollouts
from nodes import NODE_FUNCTIONS, prompts
from prompt_registry.db import LearningDB
from prompt_registry.registry import PromptRegistry


class StepList:
    """Test double sink: keeps the steps."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []

    def on_step(self, step: StepRecord) -> None:
        self.steps.append(step)


def test_each_run_is_one_rollout_with_spans_and_its_reward(
    scripted_services: MeshContext, db: LearningDB, registry: PromptRegistry
) -> None:
    recorder = RolloutRecorder(db, registry=registry)
    finished = []
    recorder.add_listener(finished.append)
    others = StepList()
    graph = compile_mesh(NODE_FUNCTIONS, InMemorySaver(), FanOutSink(recorder, others))
    runner = BatchRunner(graph, recorder.instrument(scripted_services), batch_id="t")
    outcomes = [runner.run_task(i) for i in range(2)]  # the producer invents tasks 1 and 2

    assert len(finished) == 2
    assert len(others.steps) == sum(1 for t in finished for s in t.spans if s.kind == "node") == 12
    trace = finished[0]
    nodes = [s.name for s in trace.spans if s.kind == "node"]
    assert nodes == [
        f"node.{n}" for n in ("producer", "consumer", "sandbox", "reviewer", "supervisor")
    ]
    llm = [s for s in trace.spans if s.kind == "llm"]
    assert [s.attributes["aimesh.node"] for s in llm] == ["producer", "consumer", "reviewer"]
    consumer_call = llm[1].attributes
    assert consumer_call["gen_ai.prompt.0.role"] == "system"
    assert (
        consumer_call["gen_ai.prompt.0.content"]
        == prompts.current(scripted_services, "consumer.system").text
    )
    assert "```python" in str(consumer_call["gen_ai.completion.0.content"])
    assert trace.spans[-1].kind == "reward"
    assert trace.reward == outcomes[0].reward and trace.passed == outcomes[0].passed
    # the producer's task was solved at once: too easy to teach anything (see task_worth)
    # the consumer's prompt, skills and adapter earn the mesh's reward
    consumer = dict.fromkeys(
        ("consumer.system", "consumer.rules", "consumer.exemplars", "consumer.adapter")
    )
    assert trace.rewards == {**{k: outcomes[0].reward for k in consumer}, "producer.system": 0.5}
    assert trace.prompt_versions["consumer.system"] == "v1"

    rows = db.query("SELECT * FROM rollouts ORDER BY started")
    assert [r["reward"] for r in rows] == [o.reward for o in outcomes]
    assert all(r["source"] == "mesh" and r["finished"] for r in rows)
    assert json.loads(rows[0]["prompt_versions"])["consumer.system"] == "v1"
    spans = db.query("SELECT kind FROM spans WHERE rollout_id = ?", (trace.rollout_id,))
    assert [s["kind"] for s in spans].count("node") == 5
    rewards = db.query(
        "SELECT name, version, reward FROM rewards WHERE rollout_id = ?", (trace.rollout_id,)
    )
    assert {(r["name"], r["version"]) for r in rewards} == {
        ("consumer.system", "v1"),
        ("consumer.rules", "v0"),
        ("consumer.exemplars", "v0"),
        ("consumer.adapter", "v0"),
        ("producer.system", "v2"),
    }
    v1 = registry.get("consumer.system", "v1")
    assert v1.n == 2 and abs(v1.mean - sum(o.reward for o in outcomes) / 2) < 1e-9


def test_rollouts_survive_a_restart(
    scripted_services: MeshContext, data_dir: object, db: LearningDB
) -> None:
    recorder = RolloutRecorder(db)
    graph = compile_mesh(NODE_FUNCTIONS, InMemorySaver(), recorder)
    BatchRunner(graph, scripted_services, batch_id="r").run_task(1)
    path = db.path
    db.close()
    [trace] = load_rollouts(LearningDB(path))
    assert trace.task is not None and trace.task.entry_point == "reverse_words"
    assert trace.attempts == 2 and trace.passed  # failed once, fixed after feedback
    assert [s.name for s in trace.spans if s.kind == "node"].count("node.consumer") == 2
    assert trace.rewards["consumer.system"] == trace.reward


def test_a_run_that_is_never_reviewed_gets_reward_zero(db: LearningDB) -> None:
    recorder = RolloutRecorder(db)
    state = MeshState(status="failed", error="producer gave up")
    for node, nxt in (("producer", "supervisor"), ("supervisor", "__end__")):
        recorder.on_step(StepRecord(node=node, next_node=nxt, state=state, latency_ms=1.0))
    [trace] = recorder.finished
    assert trace.reward == 0.0 and not trace.reviewed and trace.rewards == {}
    assert db.query("SELECT reward, status FROM rollouts")[0]["status"] == "failed"


def test_recording_is_cheap(db: LearningDB) -> None:
    recorder = RolloutRecorder(db)
    state = MeshState()
    started = time.perf_counter()
    for i in range(200):
        state = MeshState(run_id=f"run{i // 5}")
        recorder.on_step(
            StepRecord(node="consumer", next_node="sandbox", state=state, latency_ms=1.0)
        )
    per_step_ms = (time.perf_counter() - started) / 200 * 1000
    assert per_step_ms < 20, per_step_ms


def test_the_light_modules_do_not_import_agent_lightning() -> None:
    code = (
        "import sys, learning, learning.rollouts, prompt_registry.registry, learning.periodic, "
        "learning.learner, app.cli.learn, learning.candidates, learning.bandit\n"
        "assert 'agentlightning' not in sys.modules, 'imported agentlightning'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_workers_sharing_the_file_record_one_rollout(
    scripted_services: MeshContext, db: LearningDB
) -> None:
    """Distributed mode: each node may run in another worker process with its own recorder."""
    sink = StepList()
    graph = compile_mesh(NODE_FUNCTIONS, InMemorySaver(), sink)
    BatchRunner(graph, scripted_services, batch_id="d").run_task(0)
    steps = sink.steps
    producer_worker, other_worker = RolloutRecorder(db), RolloutRecorder(LearningDB(db.path))
    for step in steps:
        recorder = producer_worker if step.node == "producer" else other_worker
        if step.node == "producer":  # as its LLM handler would
            recorder._add_pending(
                SpanRecord("llm.producer", "llm", 0.0, 1.0, {"aimesh.node": "producer"})
            )
        recorder.on_step(step)
    [trace] = other_worker.finished
    assert trace.rewards["producer.system"] == 0.5  # saw the other worker's producer call
    seqs = [r["seq"] for r in db.query("SELECT seq FROM spans ORDER BY seq")]
    assert seqs == list(range(len(steps) + 2))  # + the LLM span and the reward span
