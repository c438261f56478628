"""Evaluations kept on disk. With a deterministic model (temperature 0), a run with the same
prompts on the same task gives the same rollout, so a learning run that was stopped mid-round
replays the evaluations it had finished instead of running them again
(`MeshEvaluator(cache_path=...)`): one JSON line per evaluation, appended when it finishes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from graph.state import Task
from learning.rollouts import RolloutTrace, SpanRecord


def digest(key: Any) -> str:
    """A stable name for an evaluation's key (prompts and task)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def trace_as_json(trace: RolloutTrace) -> dict[str, Any]:
    """A rollout as plain data (`trace_of` reads it back)."""
    data = {f.name: getattr(trace, f.name) for f in dataclasses.fields(trace)}
    data["spans"] = [dataclasses.asdict(span) for span in trace.spans]
    data["task"] = trace.task.model_dump(mode="json") if trace.task else None
    return data


def trace_of(data: dict[str, Any]) -> RolloutTrace:
    """The rollout `trace_as_json` wrote."""
    task = Task.model_validate(data["task"]) if data["task"] else None
    spans = [SpanRecord(**span) for span in data["spans"]]
    return RolloutTrace(**{**data, "spans": spans, "task": task})


class DurableCache:
    """Finished evaluations by key, in a JSONL file read once and appended to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.traces: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.open():
                if line.strip():
                    entry = json.loads(line)
                    self.traces[entry["key"]] = entry["trace"]

    def get(self, key: Any) -> RolloutTrace | None:
        stored = self.traces.get(digest(key))
        return trace_of(stored) if stored is not None else None

    def put(self, key: Any, trace: RolloutTrace) -> None:
        name, data = digest(key), trace_as_json(trace)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"key": name, "trace": data}) + "\n")
        self.traces[name] = data
