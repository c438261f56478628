"""`aimesh eval`: the honest protocol on HumanEval (or any HumanEval-format dataset): greedy first
attempt, blind best-of-K, the loop with public feedback, the loop with oracle feedback; one
column each, with intervals and paired tests (see app.eval_protocol)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.common import console, progress, readable_errors, settings_with
from app.eval_protocol import ProblemRow, Protocol, ProtocolOptions, write_manifest
from app.eval_report import commit, load_average, machine, public_settings, report
from app.services import build_context
from graph.builder import compile_mesh
from graph.checkpoint import sqlite_checkpointer
from graph.datasets import humaneval_tasks, load_tasks, task_id_of
from graph.runner import BatchRunner
from graph.state import Task
from nodes import NODE_FUNCTIONS


def evaluate_command(
    dataset: Annotated[
        str, typer.Option(help="humaneval, or a HumanEval-format JSONL")
    ] = "humaneval",
    limit: Annotated[int | None, typer.Option(min=1, help="first N problems")] = None,
    attempts: Annotated[
        int, typer.Option(min=1, max=10, help="K: model calls of the loop and of best-of-K")
    ] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    llm: Annotated[str | None, typer.Option(help="auto | openai | local | scripted")] = None,
    resume: Annotated[str | None, typer.Option(help="id of an interrupted eval")] = None,
    memory: Annotated[
        bool,
        typer.Option(
            help="agents use their long-term memory store (off by default: a store that saw these "
            "problems before would make the scores dependent on earlier runs)"
        ),
    ] = False,
    retry: Annotated[
        str | None, typer.Option(help="retry strategy: repair | resample (AIMESH_RETRY_STRATEGY)")
    ] = None,
    ids: Annotated[
        str | None, typer.Option(help="only these problems, comma-separated (e.g. HumanEval/10)")
    ] = None,
    oracle_limit: Annotated[
        int | None,
        typer.Option(
            min=0, help="run the oracle-feedback loop (d) on the first N problems (default: all)"
        ),
    ] = None,
    completion: Annotated[
        bool, typer.Option(help="also measure the model card's prompt shape, greedy (e)")
    ] = True,
    report_only: Annotated[
        bool,
        typer.Option(help="with --resume: rebuild the report from the stored rows, run nothing"),
    ] = False,
) -> None:
    """Measure, on the same problems in one run: (a) greedy first attempt, (b) blind best-of-K,
    (c) the loop with public feedback, (d) the loop with oracle feedback; with intervals."""
    with readable_errors():
        eval_id = resume or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        base = settings_with(llm=llm)
        folder = base.data_dir / "evals"
        manifest_path = folder / f"{eval_id}.json"
        if resume:
            if not manifest_path.exists():
                raise FileNotFoundError(f"no eval manifest at {manifest_path}")
            manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        else:
            manifest = {
                "eval_id": eval_id,
                "args": {
                    "dataset": dataset,
                    "limit": limit,
                    "ids": ids,
                    "llm": llm,
                    "memory": memory,
                    "retry": retry,
                    "json": str(json_out) if json_out else None,
                },
                "options": ProtocolOptions(
                    k=attempts,
                    oracle_limit=oracle_limit,
                    completion=completion,
                ).model_dump(),
                "segments": [],
            }
        args = manifest["args"]
        options = ProtocolOptions.model_validate(manifest["options"])
        settings = settings_with(
            llm=args["llm"],
            review_with_llm=False,
            llm_temperature=0.0,
            retry_strategy=args["retry"],
        )
        out = json_out or (Path(args["json"]) if args["json"] else None)
        tasks = _tasks(args["dataset"], args["ids"], args["limit"])
        rows_path = folder / f"{eval_id}.jsonl"
        if report_only:
            if not resume:
                raise typer.BadParameter("--report-only needs --resume")
            segment = manifest["segments"][-1]
            if "ended" not in segment:  # stopped by a signal that left no time to write
                segment.update(ended=_now(), load_after=load_average(), interrupted=True)
            write_manifest(manifest_path, manifest)
            stored = Protocol.stored(rows_path)
            rows = [stored[i] for i in range(len(tasks)) if i in stored]
            payload = _write(out, rows, manifest, settings, segment) if out else None
            _print(payload or report(rows, _header(manifest, settings, segment)), options.k)
            return
        # the code that runs is the one at the start (the tree may change while a long run goes on)
        segment = {"started": _now(), "load_before": load_average(), **commit()}
        manifest["segments"].append(segment)
        write_manifest(manifest_path, manifest)
        with sqlite_checkpointer(settings.checkpoint_db) as saver, progress() as bars:
            context = build_context(settings, use_memory=bool(args["memory"]))
            graph = compile_mesh(NODE_FUNCTIONS, saver)
            protocol = Protocol(
                BatchRunner(graph, context, f"{eval_id}-public"),
                BatchRunner(graph, context, f"{eval_id}-oracle"),
                options,
                rows_path,
            )
            bars.console.print(f"eval {eval_id} (resume: --resume {eval_id})")
            bar = bars.add_task("problems", total=len(tasks))
            done: list[ProblemRow] = []

            def on_row(row: ProblemRow) -> None:
                done.append(row)
                bars.update(bar, advance=1, description=f"loop {sum(r.loop for r in done)}")
                if out:  # partial figures survive an interruption
                    _write(out, done, manifest, settings, segment)

            try:
                rows = protocol.run(tasks, on_row=on_row)
            except (KeyboardInterrupt, SystemExit):
                segment.update(ended=_now(), load_after=load_average(), interrupted=True)
                write_manifest(manifest_path, manifest)
                raise
        segment.update(ended=_now(), load_after=load_average())
        write_manifest(manifest_path, manifest)
        payload = _write(out, rows, manifest, settings, segment) if out else None
        payload = payload or report(rows, _header(manifest, settings, segment))
        _print(payload, options.k)
        if out:
            console.print(f"report written to {out}")


def _header(manifest: dict[str, Any], settings: Any, segment: dict[str, Any]) -> dict[str, Any]:
    cores = machine()["cores"] or 1
    segments = manifest["segments"]
    loads = [s.get(key) for s in segments for key in ("load_before", "load_after")]
    return {
        "eval_id": manifest["eval_id"],
        "commit": segment["commit"],
        "dirty": segment["dirty"],
        "model": settings.model_label,
        "local_model": settings.local_model,
        "options": manifest["options"],
        "args": manifest["args"],
        "settings": public_settings(settings),
        "machine": machine(),
        "segments": segments,
        "loaded": any(load is not None and load > cores for load in loads),
    }


def _write(
    out: Path, rows: list[ProblemRow], manifest: dict[str, Any], settings: Any, segment: Any
) -> dict[str, Any]:
    payload = report(rows, _header(manifest, settings, segment))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return payload


def _print(payload: dict[str, Any], k: int) -> None:
    table = Table(title=f"HumanEval protocol ({payload['problems']} problems, K={k})")
    for name in ("column", "solved", "rate", "95% CI", "calls/problem"):
        table.add_column(name)
    for c in payload["columns"].values():
        low, high = c["ci95"]
        calls = c["calls_per_problem"]
        table.add_row(
            f"{c['key']}: {c['label']}",
            f"{c['solved']}/{c['n']}",
            f"{100 * c['rate']:.1f}%",
            f"{100 * low:.1f}-{100 * high:.1f}%",
            "-" if calls is None else f"{calls:.2f}",
        )
    console.print(table)
    for t in payload["paired_exact_mcnemar"]:
        console.print(
            f"{t['first']} vs {t['second']}: {t['only_first']} vs {t['only_second']} discordant "
            f"of {t['n']}, difference {100 * t['difference']:+.1f} points, "
            f"exact McNemar p = {t['p_value']:.3f}"
        )
    if payload["loaded"]:
        console.print("[yellow]load average exceeded the core count during the run[/]")


def _tasks(dataset: str, ids: str | None, limit: int | None) -> list[Task]:
    tasks = humaneval_tasks() if dataset == "humaneval" else load_tasks(Path(dataset))
    tasks = _chosen(tasks, ids)
    return tasks[:limit] if limit else tasks


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _chosen(tasks: list[Task], ids: str | None) -> list[Task]:
    """The tasks named by `--ids` (all when None); BadParameter for an unknown one."""
    if not ids:
        return tasks
    wanted = {task_id_of(i) for i in ids.split(",") if i.strip()}
    if missing := wanted - {t.task_id for t in tasks}:
        raise typer.BadParameter(f"unknown problem(s): {', '.join(sorted(missing))}")
    return [t for t in tasks if t.task_id in wanted]
