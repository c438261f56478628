"""Distributed workers share one memory through a Chroma server (real server, real processes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from memtest import (
    BINARY_SEARCH,
    BINARY_SEARCH_FAILED,
    BINARY_SEARCH_FIXED,
    BINARY_SEARCH_LIKE,
    FIBONACCI,
    FIBONACCI_CODE,
    FIBONACCI_LIKE,
    TIMEOUT_ERROR,
    UNRELATED,
    child_env,
    finish,
    start_python,
)

from foundation.settings import Settings
from memory import AgentMemory, MemorySettings
from memory.chroma_server import ChromaServer

WORKER = """
import json, sys
from foundation.settings import Settings
from memory import AgentMemory
worker = sys.argv[1]
with AgentMemory.from_settings(Settings()) as memory:
    for i in range(5):
        memory.record_task(f"{worker}-{i}", worker, i + 1, f"Task {i} of worker {worker}.")
    if worker == "w1":
        memory.record_fix_recipe(*json.loads(sys.argv[2]))
    else:
        memory.record_best_practice(*json.loads(sys.argv[2]))
    print(json.dumps({"backend": memory.backend, "count": memory.count()}))
"""


def _worker(name: str, args: list[str], port: int, data: Path) -> subprocess.Popen[str]:
    env = child_env(
        AIMESH_DATA_DIR=str(data),
        AIMESH_MEMORY_BACKEND="chroma",
        AIMESH_MEMORY_CHROMA_PORT=str(port),
    )
    return start_python(WORKER, env, name, json.dumps(args))


def test_two_worker_processes_share_one_chroma_store(tmp_path: Path) -> None:
    recipe = [BINARY_SEARCH, TIMEOUT_ERROR, BINARY_SEARCH_FAILED, BINARY_SEARCH_FIXED]
    practice = [FIBONACCI, "Iterative, O(1) memory, clear names.", FIBONACCI_CODE]
    with ChromaServer(tmp_path / "chroma") as server:
        assert server.port is not None
        # Both workers hold the store at the same time (embedded Qdrant would refuse the second).
        w1 = _worker("w1", recipe, server.port, tmp_path / "w1")
        w2 = _worker("w2", practice, server.port, tmp_path / "w2")
        results = [json.loads(finish(w).strip().splitlines()[-1]) for w in (w1, w2)]
        assert {r["backend"] for r in results} == {"chroma"}
        assert all(6 <= r["count"] <= 12 for r in results)  # its own 6, maybe the other's

        # A third process (this one) sees what both wrote.
        memory_settings = MemorySettings(backend="chroma", chroma_port=server.port)
        with AgentMemory.from_settings(
            Settings(data_dir=tmp_path / "reader", memory=memory_settings)
        ) as memory:
            assert memory.coverage() == [("w1", 5, 5), ("w2", 5, 5)]
            bs = memory.recall(BINARY_SEARCH_LIKE)
            assert bs.hits == 1 and bs.fix_recipes[0].startswith("Fix recipe for task")
            fib = memory.recall(FIBONACCI_LIKE)
            assert fib.hits == 1 and fib.best_practices[0].startswith("Best practice for task")
            # scores are cosine similarities here too, so the threshold means the same
            assert bs.records[0].score is not None and 0.4 < bs.records[0].score < 1.0
            assert all(memory.recall(s).hits == 0 for s in UNRELATED)
            # recording is idempotent across processes: w1's recipe and task are not re-added
            assert memory.record_fix_recipe(*recipe) == bs.records[0].id
            assert memory.record_task("w1-0", "w1", 1, "Task 0 of worker w1.")
            assert memory.count() == 12

    # The server persists: a new server on the same directory has everything.
    with ChromaServer(tmp_path / "chroma") as server:
        assert server.port is not None
        memory_settings = MemorySettings(backend="chroma", chroma_port=server.port)
        with AgentMemory.from_settings(
            Settings(data_dir=tmp_path / "reader", memory=memory_settings)
        ) as memory:
            assert memory.counts() == {"task": 10, "fix_recipe": 1, "best_practice": 1}
