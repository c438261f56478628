"""Expert iteration into LoRA adapters, measured: each round samples K answers per training task
through the graph (round r with round r-1's adapter), keeps the verified ones, trains a LoRA
adapter on the served weights and serves it per request; then greedy pass@1 of every adapter
against the base on the same server in the same run, on HumanEval's validation and test splits
and on produced tasks held out from training, paired (exact McNemar, bootstrap 95 % interval),
with an A/A control (the base twice) that measures what concurrent decoding alone changes. Then
the loop's pass@1 of every arm (`--loop-attempts` K: the honest evaluation's loop, public
feedback only, at most K model calls, the answer submitted chosen without a hidden test), the
base twice again as its A/A control (the loop's retries are sampled).

Resumable: rows are kept per task, a round's examples once sampled, training by step.
Writes benchmarks/results/learning_weights.json and its chart.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from app.cli.common import progress
from app.services import build_context
from benchmarks.common import rate_bars, saved_figure
from benchmarks.paired_runs import add_run_options, measure, paired_rates, rate
from benchmarks.resumable import ResumableRun
from foundation.settings import Settings
from graph.state import FeedbackMode, Task
from learning.candidates import MeshEvaluator, TaskItem, task_items
from learning.expert_iteration import (
    AdapterHost,
    ExpertIterationOptions,
    RoundData,
    sample_round,
    sampling_evaluator,
)
from learning.lora_training import BaseModel, LoraOptions, export_adapter, load_base, train_adapter
from learning.sft_data import Example, Sample, select_examples
from learning.splits import humaneval_split_tasks
from llm.engine_build import find_engine
from llm.local_model import ensure_model
from nodes.prompts import CONSUMER_ADAPTER

console = Console()
PRODUCED = Path("benchmarks/data/produced_tasks_0.5b.jsonl")
GOAL_POINTS = 0.04
REFERENCE_1_5B = Path("benchmarks/results/humaneval_protocol_1.5b.json")
SPLITS = ("val", "test", "produced")
"""One colour per arm in both panels of the chart (later rounds take matplotlib's cycle)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4, help="answers per training task (K)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--per-task", type=int, default=2, help="verified answers kept per task")
    parser.add_argument("--train-humaneval", type=int, default=40, help="train split tasks")
    parser.add_argument("--train-produced", type=int, default=40, help="produced training tasks")
    parser.add_argument("--held-out", type=int, default=30, help="produced tasks held out")
    parser.add_argument("--val", type=int, default=40)
    parser.add_argument("--test", type=int, default=84)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--loop-attempts", type=int, default=3, help="the loop's model calls per task (0: no loop)"
    )
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--top-layers", type=int, default=0, help="0: every layer")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument(
        "--report-only", action="store_true", help="write the results from the stored rows"
    )
    add_run_options(parser, "learning_weights")
    return parser.parse_args(argv)


def produced_tasks(path: Path = PRODUCED) -> list[Task]:
    """The produced tasks stored from the loop (accepted ones: their reference passed)."""
    rows = [json.loads(line) for line in path.open() if line.strip()]
    return [Task.model_validate(r["task"]) for r in rows if r.get("accepted") and r.get("task")]


def run_all(run: ResumableRun, args: argparse.Namespace) -> None:
    """Every round: sample, train, export, then evaluate the new adapter (and in round 1 the
    base twice) on the evaluation tasks."""
    settings = Settings(
        review_with_llm=False,
        llm_temperature=0.0,
        max_attempts=1,
        data_dir=run.folder / "data",
        local_model_parallel=args.concurrency,
    )
    produced = produced_tasks()
    held = produced[-args.held_out :] if args.held_out else []
    train = task_items(
        humaneval_split_tasks("train", args.train_humaneval) + produced[: args.train_produced]
    )
    evaluation = {  # the test split first: the goal is judged on it
        "test": humaneval_split_tasks("test", args.test),
        "val": humaneval_split_tasks("val", args.val),
        "produced": held,
    }
    options = ExpertIterationOptions(
        samples=args.samples,
        temperature=args.temperature,
        per_task=args.per_task,
        held_out=tuple(t.task_id for t in held),
        lora=LoraOptions(
            rank=args.rank,
            alpha=2 * args.rank,
            top_layers=args.top_layers,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
        ),
    )
    model = ensure_model(settings.local_model, settings.cache_dir)
    engine = find_engine(settings.cache_dir)
    base: list[BaseModel] = []
    adapters: list[Path] = []
    with AdapterHost(settings) as host:
        for number in range(1, args.rounds + 1):
            folder = run.folder / "adapters" / f"r{number}"
            name = f"consumer-r{number}"
            gguf = folder / f"{name}.gguf"
            if not run.done(f"round/{number}") or not gguf.is_file():
                # a run continued on another machine has the examples (committed rows), not the
                # adapter files: it trains them again from the same examples
                previous = adapters[-1].stem if adapters else ""
                examples = _examples(run, number, host, adapters, previous, train, options)
                host.close()  # training needs both cores
                if not base:
                    base.append(load_base(model))
                training = train_adapter(examples, base[0], folder, options.lora)
                export_adapter(engine, model, folder, name)
                if not run.done(f"round/{number}"):
                    run.add(f"round/{number}", {"kind": "round", "round": number,
                                                "training": training.as_dict()})  # fmt: skip
            adapters.append(gguf)
            arms = {name: name}
            if number == 1:
                arms = {"base": "", "base-again": "", **arms}
            served = host.serve(adapters)
            _evaluate(run, served, evaluation, arms, args.concurrency)
        if args.loop_attempts:
            arms = {"base": "", **{a.stem: a.stem for a in adapters}, "base-again": ""}
            served = host.serve(adapters)
            _evaluate(run, served, evaluation, arms, args.concurrency, args.loop_attempts)


def _examples(
    run: ResumableRun,
    number: int,
    host: AdapterHost,
    adapters: list[Path],
    previous: str,
    train: list[TaskItem],
    options: ExpertIterationOptions,
) -> list[Example]:
    """Round `number`'s training examples: sampled now (with adapter `previous`) and kept in
    the run folder, or read back from an interrupted run. Each task's samples are kept as they
    finish (rows `sampled/<round>/<task id>`): a round stopped mid-way samples only the rest."""
    key = f"samples/{number}"
    if not run.done(key):
        prior = stored_samples(run, number)
        sampled = {s.task.task_id for s in prior if s.task is not None}
        todo = [item for item in train if item["task"]["task_id"] not in sampled]
        served = host.serve(adapters)
        sampler = sampling_evaluator(_evaluator(served), options.temperature)

        def keep(samples: list[Sample]) -> None:
            keep_samples(run, number, samples)

        if todo:
            data = sample_round(sampler, todo, previous, options, prior=prior, on_samples=keep).data
        else:  # stopped after the last task's samples were kept
            selection = select_examples(prior, held_out=options.held_out, per_task=options.per_task)
            data = RoundData(prior, selection, 0.0)
        assert data is not None
        run.add(key, {"kind": "samples", "round": number, "sampled_with": previous or "base",
                      **data.summary(),
                      "examples_data": [asdict(e) for e in data.selection.examples],
                      "per_task_passes": _per_task(data.samples)})  # fmt: skip
    return [Example(**e) for e in run.rows[key]["examples_data"]]


def keep_samples(run: ResumableRun, number: int, samples: list[Sample]) -> None:
    """One task's samples of round `number`, as the row `sampled/<round>/<task id>`."""
    task = samples[0].task if samples else None
    if task is not None:
        rows = [{**asdict(s), "task": s.task.model_dump(mode="json") if s.task else None}
                for s in samples]  # fmt: skip
        run.add(f"sampled/{number}/{task.task_id}", {"kind": "sampled", "round": number,
                                                     "samples": rows})  # fmt: skip


def stored_samples(run: ResumableRun, number: int) -> list[Sample]:
    """The samples an interrupted round `number` kept (`keep_samples`)."""
    return [
        Sample(**{**s, "task": Task.model_validate(s["task"]) if s["task"] else None})
        for row in run.of_kind("sampled")
        if row["round"] == number
        for s in row["samples"]
    ]


def _per_task(samples: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        if sample.task is not None:
            counts[sample.task.task_id] = counts.get(sample.task.task_id, 0) + int(sample.passed)
    return counts


def _evaluator(served: Settings, attempts: int = 1) -> MeshEvaluator:
    """Graph runs on the server `served` reaches, recorded in the run folder's learning store:
    greedy single attempts, or the honest loop (public feedback) of at most `attempts` calls."""
    services = build_context(served, use_memory=False)
    assert services.registry is not None
    registry = services.registry
    feedback: FeedbackMode = "public" if attempts > 1 else "hidden_counts"
    return MeshEvaluator(
        services, db=registry.db, registry=registry, attempts=attempts, feedback=feedback
    )


def _evaluate(
    run: ResumableRun,
    served: Settings,
    evaluation: dict[str, list[Task]],
    arms: dict[str, str],
    concurrency: int,
    attempts: int = 1,
) -> None:
    """Greedy first attempt (or with `attempts` > 1 the loop) of every arm (an adapter name, ""
    for the base) on every evaluation task, `concurrency` graph runs at once; split by split, in
    each one arm after the other (requests naming different adapters are decoded one at a time:
    interleaved arms ran at a third of the speed); rows `eval/<arm>/<task id>` (`loop/...`)."""
    kind = "eval" if attempts == 1 else "loop"
    evaluator = _evaluator(served, attempts)
    jobs = [  # split by split (the test split first: a stopped run has every arm on it)
        (split, arm, item)
        for split, tasks in evaluation.items()
        for arm in arms  # llama-server batches only requests with the same adapters: arm by arm
        for item in task_items(tasks)
        if not run.done(f"{kind}/{arm}/{item['task']['task_id']}")
    ]

    def one(job: tuple[str, str, TaskItem]) -> tuple[str, str, TaskItem, Any, float]:
        split, arm, item = job
        started = time.perf_counter()
        trace = evaluator.run_one(item, {CONSUMER_ADAPTER: arms[arm]}, source=f"bench-{arm}")
        return split, arm, item, trace, time.perf_counter() - started

    pool = ThreadPoolExecutor(concurrency)
    try:
        _keep_rows(run, kind, pool.map(one, jobs), len(jobs), arms)
    finally:  # a stop (SIGTERM) drops the jobs not started instead of waiting for all of them
        pool.shutdown(wait=False, cancel_futures=True)


def _keep_rows(run: ResumableRun, kind: str, done: Any, total: int, arms: dict[str, str]) -> None:
    """Each finished evaluation as its row of `kind`, with a progress bar."""
    with progress() as bars:
        bar = bars.add_task(f"{kind}: {', '.join(arms)}", total=total)
        for split, arm, item, trace, seconds in done:
            task_id = item["task"]["task_id"]
            run.add(f"{kind}/{arm}/{task_id}", {"kind": kind, "split": split, "arm": arm,
                                                "task_id": task_id, "passed": trace.passed,
                                                "attempts": trace.attempts, "reward": trace.reward,
                                                "tokens": trace.tokens,
                                                "seconds": round(seconds, 2)})  # fmt: skip
            bars.update(bar, advance=1)


def report(run: ResumableRun, _: None) -> dict[str, Any]:
    """Rates per split and arm, each adapter against the base (paired), the A/A control, the
    cost of every round, and the goal on the test split; the same for the loop."""
    evals = run.of_kind("eval")
    by = _verdicts(evals)
    compared = _compared(by)
    last, difference = compared["difference"]["adapter"], compared["difference"]["pass_at_1"]
    rounds = run.of_kind("round")
    samples = {r["round"]: r for r in run.of_kind("samples")}
    eval_seconds = _seconds(evals)
    return {
        "benchmark": "learning_weights",
        "title": "Expert iteration into LoRA adapters, qwen2.5-coder-0.5b, greedy pass@1",
        "arguments": run.manifest["arguments"],
        "rounds": [
            _round(r, samples.get(r["round"], {}), eval_seconds.get(f"consumer-r{r['round']}"))
            for r in rounds
        ],
        **compared,
        "moonshot": moonshot(by, last),
        "goal": {
            "points": GOAL_POINTS,
            "met": bool(
                difference
                and difference["difference"] >= GOAL_POINTS
                and difference["mcnemar_p"] < 0.05
            ),
        },
        "loop": loop_report(run),
        **run.record(),
    }


def loop_report(run: ResumableRun) -> dict[str, Any] | None:
    """The loop's pass@1 (public feedback, at most `loop_attempts` calls) of every arm, paired
    against the base, its A/A control, and the calls it spent; None before any loop row."""
    loops = run.of_kind("loop")
    if not loops:
        return None
    calls: dict[str, list[int]] = {}
    for row in loops:
        calls.setdefault(row["arm"], []).append(row["attempts"])
    return {
        "attempts": int(run.manifest["arguments"].get("loop_attempts", 0)),
        **_compared(_verdicts(loops)),
        "calls_per_task": {a: round(sum(c) / len(c), 2) for a, c in calls.items()},
        "seconds": _seconds(loops),
    }


def _compared(by: dict[tuple[str, str, str], bool]) -> dict[str, Any]:
    """Rates per split and arm with each arm against the base, the A/A control (the base
    again), and the last adapter measured on the whole test split against the base."""
    splits = _splits(by)
    last, difference = _last_adapter(splits)
    return {
        "splits": splits,
        "aa_control": {s: f["against_base"].get("base-again") for s, f in splits.items()},
        "difference": {"pass_at_1": difference, "adapter": last},
    }


def _verdicts(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], bool]:
    return {(r["split"], r["arm"], r["task_id"]): bool(r["passed"]) for r in rows}


def _seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Graph-run seconds per arm, summed over its tasks (runs overlapped: not wall time)."""
    total: dict[str, float] = {}
    for row in rows:
        total[row["arm"]] = total.get(row["arm"], 0.0) + row["seconds"]
    return {arm: round(seconds, 1) for arm, seconds in total.items()}


def _arm_order(arm: str) -> tuple[bool, bool, str]:
    """Arms in order: the base, the base again, then the adapters by name."""
    return (arm != "base", arm != "base-again", arm)


def _splits(by: dict[tuple[str, str, str], bool]) -> dict[str, Any]:
    """Per split: the rate of every arm that covered all its tasks, and each against the base."""
    arms = sorted({a for (_, a, _) in by}, key=_arm_order)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        ids = sorted({task for (s, _, task) in by if s == split})
        if not ids:
            continue
        complete = [a for a in arms if all((split, a, t) in by for t in ids)]
        figures: dict[str, Any] = {"n": len(ids), "arms": {}, "against_base": {}}
        for arm in complete:
            values = [by[(split, arm, t)] for t in ids]
            figures["arms"][arm] = rate(values)
            if arm != "base" and "base" in complete:
                base = [by[(split, "base", t)] for t in ids]
                figures["against_base"][arm] = paired_rates(base, values)
        splits[split] = figures
    return splits


def _last_adapter(splits: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The last adapter measured on the whole test split, and its difference from the base."""
    test = splits.get("test", {}).get("against_base", {})
    measured = sorted(a for a in test if a.startswith("consumer-"))
    last = measured[-1] if measured else None
    return last, test.get(last) if last else None


def _round(row: dict[str, Any], samples: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """One round: its sampling, its training, and what it cost (wall hours of sampling and
    training; CPU hours are those times all the cores of the machine that writes the report,
    the one the run was on)."""
    sampling, training = _sampling(samples), row["training"]
    wall = (sampling.get("seconds", 0.0) + training.get("seconds", 0.0)) / 3600
    return {
        "round": row["round"],
        "sampling": sampling,
        "training": training,
        "evaluation_seconds": seconds,
        "cost": {
            "wall_hours": round(wall, 2),
            "cpu_hours": round(wall * (os.cpu_count() or 1), 2),
            "examples": training.get("examples"),
            "training_tokens": training.get("tokens"),
        },
    }


def moonshot(by: dict[tuple[str, str, str], bool], adapter: str | None) -> dict[str, Any] | None:
    """The adapter's greedy pass@1 against the 1.5B's greedy first attempt on the test problems
    both were run on (the 1.5B's from its stored protocol run, `REFERENCE_1_5B`: another run, on
    the old server)."""
    if adapter is None or not REFERENCE_1_5B.exists():
        return None
    rows = json.loads(REFERENCE_1_5B.read_text())["rows"]
    reference = {r["task_id"]: bool(r["greedy"]) for r in rows if r.get("greedy") is not None}
    ids = sorted(t for (s, a, t) in by if s == "test" and a == adapter and t in reference)
    if not ids:
        return None
    small = [by[("test", adapter, t)] for t in ids]
    large = [reference[t] for t in ids]
    return {
        "reference": str(REFERENCE_1_5B),
        "n": len(ids),
        "adapter": rate(small),
        "qwen2.5-coder-1.5b": rate(large),
        "met": sum(small) >= sum(large),
    }


def _sampling(row: dict[str, Any]) -> dict[str, Any]:
    hidden = ("key", "kind", "examples_data", "per_task_passes")
    return {k: v for k, v in row.items() if k not in hidden}


def chart(payload: dict[str, Any], path: Path) -> None:
    """Greedy pass@1 of every arm on every split, with 95 % intervals; beside it the loop's."""
    panels = [("greedy pass@1", payload)]
    if payload.get("loop"):
        panels.append((f"the loop's pass@1 (at most {payload['loop']['attempts']} calls)",
                       payload["loop"]))  # fmt: skip
    arms = {arm for _, f in panels for split in f["splits"].values() for arm in split["arms"]}
    colors = {arm: f"C{i}" for i, arm in enumerate(sorted(arms, key=_arm_order))}
    size = (8 * len(panels), 4.4)
    with saved_figure(path, 1, len(panels), figsize=size, squeeze=False) as (fig, axes):
        for ax, (label, figures) in zip(axes[0], panels, strict=True):
            _panel(ax, label, figures, colors)
        fig.suptitle(payload["title"].split(",")[0] + ", qwen2.5-coder-0.5b", fontsize=10)


def _panel(ax: Any, label: str, figures: dict[str, Any], colors: dict[str, str]) -> None:
    measured = {s: figures["splits"][s]["arms"] for s in SPLITS if s in figures["splits"]}
    arms: dict[str, Any] = max(measured.values(), key=len, default={})
    splits = [s for s in measured if set(arms) <= set(measured[s])]  # splits with every arm
    series = {arm: [measured[s][arm] for s in splits] for arm in arms}
    if series:
        groups = [f"{s} (n={figures['splits'][s]['n']})" for s in splits]
        rate_bars(ax, groups, series, colors)
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylabel(f"{label} (%)")
    ax.set_ylim(0, 105)
    d = figures["difference"]["pass_at_1"]
    note = (  # from the counts: the stored difference is rounded to 4 digits
        f"{figures['difference']['adapter']} - base on test: "
        f"{100 * (d['only_other'] - d['only_base']) / d['n']:+.1f} "
        f"points, McNemar p={d['mcnemar_p']:.3f}"
        if d
        else "no adapter measured on the whole test split yet"
    )
    ax.set_title(f"{label}\n{note}", fontsize=9)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    payload, path = measure(
        args, lambda run: None if args.report_only else run_all(run, args), report
    )
    chart(payload, path.with_suffix(".png"))
    for split, figures in payload["splits"].items():
        line = ", ".join(f"{arm} {f['solved']}/{f['n']}" for arm, f in figures["arms"].items())
        console.print(f"{split}: {line}")
    console.print(f"adapter - base on test: {payload['difference']}; goal {payload['goal']}")
    if payload["loop"]:
        for split, figures in payload["loop"]["splits"].items():
            line = ", ".join(f"{arm} {f['solved']}/{f['n']}" for arm, f in figures["arms"].items())
            console.print(f"loop, {split}: {line}")
    console.print(f"written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
