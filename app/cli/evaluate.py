"""`aimesh eval`: the honest protocol on HumanEval (or any HumanEval-format dataset): greedy first
attempt, blind best-of-K, the loop with public feedback, the loop with oracle feedback; one
column each, with intervals and paired tests (see app.eval_protocol)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import DataDirOption, LlmOption, console, count_option, progress, settings_with
from app.eval_protocol import ProblemRow, Protocol, ProtocolOptions, write_manifest
from app.eval_report import commit, load_average, machine, print_report, public_settings, report
from app.services import build_context
from foundation.settings import RetryStrategy, Settings
from graph.builder import compile_mesh
from graph.checkpoint import sqlite_checkpointer
from graph.datasets import DATASET_HELP, HUMANEVAL, dataset_tasks, task_id_of
from graph.runner import BatchRunner
from graph.state import Task
from llm.chat import model_label
from nodes import NODE_FUNCTIONS


def evaluate_command(
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = HUMANEVAL,
    count: Annotated[int | None, count_option("first N problems [default: all]")] = None,
    attempts: Annotated[
        int, typer.Option(min=1, max=10, help="K: model calls of the loop and of best-of-K")
    ] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
    llm: LlmOption = None,
    resume: Annotated[str | None, typer.Option(help="id of an interrupted eval")] = None,
    memory: Annotated[
        bool,
        typer.Option(
            help="agents use their long-term memory store (off by default: a store that saw these "
            "problems before would make the scores dependent on earlier runs)"
        ),
    ] = False,
    retry: Annotated[
        RetryStrategy | None,
        typer.Option(help="retry strategy [default: AIMESH_RETRY_STRATEGY or resample]"),
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
    codet: Annotated[
        bool,
        typer.Option(
            help="also choose among (b)'s candidates by tests the model writes (CodeT), (f): "
            "one more call per problem"
        ),
    ] = True,
    report_only: Annotated[
        bool,
        typer.Option(help="with --resume: rebuild the report from the stored rows, run nothing"),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="problems in flight at once [default: the model server's slots, "
            "AIMESH_LOCAL_MODEL_PARALLEL]",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Measure, on the same problems in one run: (a) greedy first attempt, (b) blind best-of-K,
    (c) the loop with public feedback, (d) the loop with oracle feedback, (e) the model card's
    prompt shape, (f) (b)'s candidates chosen by model-written tests; with intervals."""
    if report_only and not resume:
        raise typer.BadParameter("--report-only needs --resume")
    eval_id = resume or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = settings_with(llm=llm, data_dir=data_dir).data_dir / "evals"
    manifest_path, rows_path = folder / f"{eval_id}.json", folder / f"{eval_id}.jsonl"
    if resume:
        manifest = _stored_manifest(manifest_path, rows_path, json_out)
    else:
        args = {  # "limit": the key manifests have always used for the first N problems
            "dataset": dataset, "limit": count, "ids": ids, "llm": llm, "memory": memory,
            "retry": retry, "json": str(json_out) if json_out else None,
        }  # fmt: skip
        options = ProtocolOptions(
            k=attempts, oracle_limit=oracle_limit, completion=completion, codet=codet
        )
        manifest = {
            "eval_id": eval_id, "args": args, "options": options.model_dump(), "segments": [],
        }  # fmt: skip
    run = EvalRun(
        manifest=manifest,
        manifest_path=manifest_path,
        rows_path=rows_path,
        settings=_eval_settings(manifest["args"], data_dir),
        out=json_out or (Path(manifest["args"]["json"]) if manifest["args"]["json"] else None),
    )
    tasks = _tasks(run.args["dataset"], run.args["ids"], run.args["limit"])
    if report_only:
        _report_stored(run, tasks)
    else:
        _run_protocol(run, tasks, concurrency or run.settings.local_model_parallel)


@dataclass(frozen=True)
class EvalRun:
    """One eval: its manifest (arguments, options, segments), where its files go, its settings."""

    manifest: dict[str, Any]
    manifest_path: Path
    rows_path: Path
    settings: Settings
    out: Path | None

    @property
    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = self.manifest["args"]
        return args

    @property
    def options(self) -> ProtocolOptions:
        return ProtocolOptions.model_validate(self.manifest["options"])

    def save(self) -> None:
        write_manifest(self.manifest_path, self.manifest)

    def publish(self, rows: list[ProblemRow], segment: dict[str, Any]) -> dict[str, Any]:
        """The report of `rows` (written to `out` when given: partial figures survive a stop)."""
        payload = report(rows, _header(self.manifest, self.settings, segment))
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(payload, indent=2))
        return payload


def _stored_manifest(path: Path, rows_path: Path, report_path: Path | None) -> dict[str, Any]:
    """The manifest of the eval to resume. Where the data dir no longer holds it (another
    machine, a wiped dir), it and the finished rows are rebuilt from the eval's report
    (`--json REPORT`), which keeps every finished row."""
    if path.exists():
        stored: dict[str, Any] = json.loads(path.read_text())
        return stored
    if report_path is None or not report_path.exists():
        raise FileNotFoundError(
            f"no eval manifest at {path}; to continue from the eval's report, add --json REPORT"
        )
    saved = json.loads(report_path.read_text())
    if saved.get("eval_id") != path.stem:
        raise ValueError(
            f"{report_path} is the report of eval {saved.get('eval_id')}, not {path.stem}"
        )
    manifest = {key: saved[key] for key in ("eval_id", "args", "options", "segments")}
    last = manifest["segments"][-1] if manifest["segments"] else {}
    if "ended" not in last:  # its process died: when is unknown
        last.update(ended=None, load_after=None, interrupted=True)
    write_manifest(path, manifest)
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in saved["rows"]))
    return manifest


def _eval_settings(args: dict[str, Any], data_dir: Path | None) -> Settings:
    """The settings every column runs with: greedy, no LLM review, the eval's model and retry."""
    return settings_with(
        llm=args["llm"],
        review_with_llm=False,
        llm_temperature=0.0,
        retry_strategy=args["retry"],
        data_dir=data_dir,
    )


def _report_stored(run: EvalRun, tasks: list[Task]) -> None:
    """`--report-only`: rebuild the report from the stored rows, run nothing."""
    segment = run.manifest["segments"][-1]
    if "ended" not in segment:  # stopped by a signal that left no time to write
        segment.update(ended=_now(), load_after=load_average(), interrupted=True)
    run.save()
    stored = Protocol.stored(run.rows_path)
    rows = [stored[i] for i in range(len(tasks)) if i in stored]
    print_report(console, run.publish(rows, segment), run.options.k)


def _run_protocol(run: EvalRun, tasks: list[Task], concurrency: int) -> None:
    """Run (or continue) the protocol on `tasks` as a new segment, `concurrency` problems at
    once, then print the report."""
    # the code that runs is the one at the start (the tree may change while a long run goes on)
    segment = {
        "started": _now(), "load_before": load_average(), "concurrency": concurrency, **commit(),
    }  # fmt: skip
    run.manifest["segments"].append(segment)
    run.save()
    eval_id = run.manifest["eval_id"]
    with sqlite_checkpointer(run.settings.checkpoint_db) as saver, progress() as bars:
        context = build_context(run.settings, use_memory=bool(run.args["memory"]))
        graph = compile_mesh(NODE_FUNCTIONS, saver)
        protocol = Protocol(
            BatchRunner(graph, context, f"{eval_id}-public"),
            BatchRunner(graph, context, f"{eval_id}-oracle"),
            run.options,
            run.rows_path,
        )
        bars.console.print(f"eval {eval_id} (resume: --resume {eval_id})")
        bar = bars.add_task("problems", total=len(tasks))
        done: list[ProblemRow] = []

        def on_row(row: ProblemRow) -> None:
            done.append(row)
            done.sort(key=lambda r: r.index)
            bars.update(bar, advance=1, description=f"loop {sum(r.loop for r in done)}")
            if run.out:  # partial figures survive an interruption
                run.publish(done, segment)

        try:
            rows = protocol.run(tasks, on_row=on_row, concurrency=concurrency)
        except (KeyboardInterrupt, SystemExit):
            segment.update(ended=_now(), load_after=load_average(), interrupted=True)
            run.save()
            raise
    segment.update(ended=_now(), load_after=load_average())
    run.save()
    print_report(console, run.publish(rows, segment), run.options.k)
    if run.out:
        console.print(f"report written to {run.out}")


def _header(manifest: dict[str, Any], settings: Any, segment: dict[str, Any]) -> dict[str, Any]:
    cores = machine()["cores"] or 1
    segments = manifest["segments"]
    loads = [s.get(key) for s in segments for key in ("load_before", "load_after")]
    return {
        "eval_id": manifest["eval_id"],
        "commit": segment["commit"],
        "dirty": segment["dirty"],
        "model": model_label(settings),
        "local_model": settings.local_model,
        "options": manifest["options"],
        "args": manifest["args"],
        "settings": public_settings(settings),
        "machine": machine(),
        "segments": segments,
        "loaded": any(load is not None and load > cores for load in loads),
    }


def _tasks(dataset: str, ids: str | None, limit: int | None) -> list[Task]:
    tasks = dataset_tasks(dataset)
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
