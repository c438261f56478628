"""Long model benchmarks that survive being killed: a run folder keeps the arguments the run was
started with, every finished row (JSONL, appended as soon as a task or round is done) and one
segment per invocation (commit, load before and after, rows it added). The same command continues
an interrupted run; `--fresh` starts over. Graph runs in the folder's SQLite checkpointer resume
a task that was cut mid-way from its last step."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from benchmarks.common import commit, cores, load_average
from graph.checkpoint import sqlite_checkpointer

RUNS_DIR = Path("benchmarks") / "runs"
"""Where run folders go unless a benchmark is told otherwise (`--run-dir`). Inside the repository
on purpose: a run that spans sessions (and machines) continues from its committed rows and
manifest; the rest of the folder (checkpointer, ledger, memory store) is ignored (`.gitignore`),
so a run continued on another machine starts those afresh (its segment says so: a new host)."""


class ArgumentsChanged(SystemExit):
    """The run folder holds a run started with other arguments."""


class ResumableRun:
    """One benchmark run's folder: manifest (arguments, segments) and rows by key."""

    def __init__(self, folder: Path, arguments: dict[str, Any], *, fresh: bool = False) -> None:
        if fresh and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.rows_path = folder / "rows.jsonl"
        self.manifest_path = folder / "manifest.json"
        self.manifest = self._manifest(arguments)
        self.rows = self._stored()
        self.added = 0
        self.segment: dict[str, Any] = {
            "started": _now(), "commit": commit(), "load_before": load_average(),
            "rows_before": len(self.rows), "host": socket.gethostname(),
        }  # fmt: skip
        self.manifest["segments"].append(self.segment)
        self._save()

    def _manifest(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"arguments": arguments, "segments": []}
        manifest: dict[str, Any] = json.loads(self.manifest_path.read_text())
        if manifest["arguments"] != arguments:
            changed = sorted(
                k for k in arguments | manifest["arguments"]
                if arguments.get(k) != manifest["arguments"].get(k)
            )  # fmt: skip
            raise ArgumentsChanged(
                f"{self.folder} holds a run started with other arguments ({', '.join(changed)}): "
                "repeat them to resume, or pass --fresh to start over"
            )
        return manifest

    def _stored(self) -> dict[str, dict[str, Any]]:
        if not self.rows_path.exists():
            return {}
        rows = [json.loads(line) for line in self.rows_path.open() if line.strip()]
        return {row["key"]: row for row in rows}

    def done(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, row: dict[str, Any]) -> dict[str, Any]:
        """Keep `row` under `key`, on disk at once."""
        stored = {"key": key, **row}
        with self.rows_path.open("a") as handle:
            handle.write(json.dumps(stored, default=str) + "\n")
        self.rows[key] = stored
        self.added += 1
        return stored

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Stored rows whose `kind` is `kind`, in the order they were added."""
        return [row for row in self.rows.values() if row.get("kind") == kind]

    def finish(self, *, interrupted: bool = False) -> None:
        """Close this invocation's segment."""
        self.segment.update(
            ended=_now(), load_after=load_average(), rows_added=self.added, interrupted=interrupted
        )
        self._save()

    def record(self) -> dict[str, Any]:
        """The segments, and whether any ran while the load average exceeded the core count."""
        segments = self.manifest["segments"]
        loads = [s.get(k) or [0.0] for s in segments for k in ("load_before", "load_after")]
        return {"segments": segments, "loaded": any(load[0] > cores() for load in loads)}

    @contextmanager
    def checkpointer(self) -> Iterator[SqliteSaver]:
        """The folder's graph checkpointer."""
        with sqlite_checkpointer(self.folder / "checkpoints.sqlite") as saver:
            yield saver

    def _save(self) -> None:
        self.manifest_path.write_text(json.dumps(self.manifest, indent=2, default=str))


@contextmanager
def resumable(
    folder: Path, arguments: dict[str, Any], *, fresh: bool = False
) -> Iterator[ResumableRun]:
    """A `ResumableRun` whose segment is closed on the way out, marked interrupted when a signal
    or an error ended it."""
    run = ResumableRun(folder, arguments, fresh=fresh)
    try:
        yield run
    except BaseException:
        run.finish(interrupted=True)
        raise
    run.finish()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The arguments that define a run (what a resumed invocation must repeat): all but where
    its folder and results go, whether to start over, and whether to run at all."""
    ignored = {"fresh", "run_dir", "results_dir", "report_only"}
    return {k: str(v) for k, v in vars(args).items() if k not in ignored}
