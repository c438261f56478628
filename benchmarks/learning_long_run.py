"""The long-run curve: the loop on a frozen stream of produced tasks, two arms on the same stream
in one run (interleaved task by task): `learning` runs learning rounds every `--every` tasks
(`learning.periodic.learner_round` on the tasks it has done, promoted only through the validation
gate) and its next tasks use what was promoted; `frozen` keeps the seed prompts throughout. The
stream's last `--held-out` tasks never enter the loop: both arms' active prompts are scored on
them (greedy first attempt, pass@1 on the hidden tests) at the start and after every round.
Rows are kept as they finish, so the same command resumes.

    .venv/bin/python -m benchmarks.learning_long_run [--stream FILE] [--every 10] [--held-out 12]
        [--plan bandit:consumer.system,skills:consumer.rules,...] [--llm ...] [--fresh]

Writes benchmarks/results/learning_long_run.json and .png (rolling reward and held-out pass rate
over the stream, both arms).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from app.services import build_context
from benchmarks.common import saved_figure
from benchmarks.learning_plan import add_plan_options, parse_plan
from benchmarks.paired_runs import (
    Arm,
    add_penalty_option,
    add_run_options,
    measure,
    outcomes,
    run_interleaved,
    run_settings,
)
from benchmarks.resumable import ResumableRun
from benchmarks.task_stream import STREAM, load_stream
from graph.builder import compile_mesh
from graph.context import MeshContext
from graph.runner import BatchRunner
from graph.state import Task
from learning.candidates import MeshEvaluator, task_items
from learning.periodic import for_evaluation, learner_round
from llm.chat import model_label
from nodes import NODE_FUNCTIONS
from nodes.prompts import CONSUMER_SYSTEM

ARMS = ("learning", "frozen")
DEFAULT_PLAN = "bandit:consumer.system,skills:consumer.rules,skills:consumer.exemplars"

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", type=Path, default=STREAM, help="frozen produced tasks")
    parser.add_argument("--limit", type=int, default=None, help="first N tasks of the stream")
    parser.add_argument("--held-out", type=int, default=12, help="last N tasks: held out")
    parser.add_argument("--every", type=int, default=10, help="tasks between learning rounds")
    add_plan_options(parser, DEFAULT_PLAN)
    parser.add_argument("--train", type=int, default=6, help="training tasks per round")
    parser.add_argument("--val", type=int, default=8, help="validation tasks per round")
    parser.add_argument("--attempts", type=int, default=3, help="K: model calls per task")
    parser.add_argument("--window", type=int, default=10, help="rolling reward window")
    add_run_options(parser, "learning_long_run")
    add_penalty_option(parser)
    return parser.parse_args(argv)


def split_stream(args: argparse.Namespace) -> tuple[list[Task], list[Task]]:
    """The loop's tasks and the held-out ones (the stream's last `--held-out`)."""
    stream = load_stream(args.stream, args.limit)
    if len(stream) <= args.held_out:
        raise SystemExit(f"{args.stream}: {len(stream)} tasks, more than --held-out wanted")
    return stream[: -args.held_out], stream[-args.held_out :]


def held_out_score(
    run: ResumableRun, arm: str, context: MeshContext, held_out: list[Task], after: int
) -> None:
    """The arm's active prompts on the held-out tasks after `after` stream tasks (row
    `heldout/<arm>/<after>`); the last score is reused while the active versions are unchanged
    (same prompts, same tasks, temperature 0)."""
    key = f"heldout/{arm}/{after}"
    if run.done(key):
        return
    assert context.registry is not None
    versions = {n: p.version for n, p in sorted(context.registry.current_all().items())}
    earlier = [r for r in run.of_kind("heldout") if r["arm"] == arm]
    if earlier and earlier[-1]["versions"] == versions:
        reused = {k: earlier[-1][k] for k in ("reward", "pass_rate", "n")}
        run.add(key, {"kind": "heldout", "arm": arm, "after": after, "versions": versions,
                      **reused, "reused": True})  # fmt: skip
        return
    evaluator = MeshEvaluator(for_evaluation(context), db=context.registry.db,
                              registry=context.registry)  # fmt: skip
    text = context.registry.current(CONSUMER_SYSTEM).text
    score, _ = evaluator.evaluate(task_items(held_out), CONSUMER_SYSTEM, text, source="heldout")
    run.add(key, {"kind": "heldout", "arm": arm, "after": after, "versions": versions,
                  "reward": score.reward, "pass_rate": score.pass_rate, "n": score.n,
                  "reused": False})  # fmt: skip


def learning_round(
    run: ResumableRun, context: MeshContext, done: list[Task], args: argparse.Namespace
) -> None:
    """One round of every plan step on the tasks done so far (row `round/<after>`)."""
    key = f"round/{len(done)}"
    if run.done(key):
        return
    assert context.registry is not None
    reports = []
    for algorithm, prompt in parse_plan(args.plan):
        step = learner_round(
            context, context.registry, prompts=(prompt,), algorithm=algorithm,
            train=args.train, val=args.val, tasks=lambda: done,
            learner_options={"alpha": args.alpha},
        )  # fmt: skip
        reports += [report.as_dict() for report in step()]
    run.add(key, {"kind": "round", "after": len(done), "reports": reports})


def run_arms(run: ResumableRun, args: argparse.Namespace) -> str:
    """The stream through both arms, rounds and held-out scores between; the model's label."""
    stream, held_out = split_stream(args)
    contexts = {
        arm: build_context(
            run_settings(args, run.folder / arm),
            use_memory=False,
        )
        for arm in ARMS
    }
    for arm, context in contexts.items():
        held_out_score(run, arm, context, held_out, 0)

    def after_task(index: int) -> None:
        if (index + 1) % args.every:
            return
        learning_round(run, contexts["learning"], stream[: index + 1], args)
        for arm, context in contexts.items():
            held_out_score(run, arm, context, held_out, index + 1)

    with run.checkpointer() as saver:
        graph = compile_mesh(NODE_FUNCTIONS, saver)
        arms = [Arm(arm, BatchRunner(graph, context, arm)) for arm, context in contexts.items()]
        run_interleaved(run, stream, arms, args.attempts, after_task=after_task)
    return model_label(contexts["learning"].settings)


def rolling(values: list[float], window: int) -> list[float]:
    """The mean of the last `window` values at each position (fewer at the start)."""
    return [round(float(np.mean(values[max(0, i + 1 - window) : i + 1])), 4)
            for i in range(len(values))]  # fmt: skip


def report(run: ResumableRun, args: argparse.Namespace, model: str) -> dict[str, Any]:
    """The results payload from the stored rows."""
    arms: dict[str, Any] = {}
    for arm in ARMS:
        done = outcomes(run, arm)
        rewards = [o.reward for o in done]
        arms[arm] = {
            "tasks": len(done),
            "passed": sum(o.passed for o in done),
            "mean_reward": round(float(np.mean(rewards)), 4) if rewards else None,
            "rolling_reward": rolling(rewards, args.window),
            "held_out": [{k: r[k] for k in ("after", "pass_rate", "reward", "n", "reused",
                                             "versions")}
                         for r in run.of_kind("heldout") if r["arm"] == arm],
        }  # fmt: skip
    rounds = run.of_kind("round")
    promotions = [
        {"after": r["after"], "prompt": rep["prompt"], "version": rep["active_after"]}
        for r in rounds for rep in r["reports"] if rep["decision"] == "promoted"
    ]  # fmt: skip
    return {
        "benchmark": "learning_long_run",
        "title": f"Learning every {args.every} tasks vs frozen, produced stream, {model}",
        "arguments": run.manifest["arguments"],
        "arms": arms,
        "rounds": [{"after": r["after"], "reports": r["reports"]} for r in rounds],
        "promotions": promotions,
        **run.record(),
    }


def chart(payload: dict[str, Any], path: Path) -> None:
    """Rolling reward (top) and held-out pass rate (bottom) over the stream, both arms."""
    with saved_figure(path, 2, 1, figsize=(8, 6), sharex=True) as (fig, (top, bottom)):
        for arm, style in zip(ARMS, ("-", "--"), strict=True):
            values = payload["arms"][arm]
            top.plot(range(1, len(values["rolling_reward"]) + 1), values["rolling_reward"],
                     style, label=arm)  # fmt: skip
            points = values["held_out"]
            bottom.step([p["after"] for p in points], [p["pass_rate"] for p in points],
                        style, where="post", marker="o", label=arm)  # fmt: skip
        for promotion in payload["promotions"]:
            for axis in (top, bottom):
                axis.axvline(promotion["after"], color="green", alpha=0.2, linewidth=4)
        top.set_ylabel(f"rolling reward ({payload['arguments']['window']} tasks)")
        bottom.set_ylabel("held-out pass@1")
        bottom.set_xlabel("stream tasks done (green: a promotion)")
        for axis in (top, bottom):
            axis.set_ylim(0, 1.05)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        fig.suptitle(payload["title"], fontsize=10)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    payload, path = measure(
        args, lambda run: run_arms(run, args), lambda run, model: report(run, args, model)
    )
    chart(payload, path.with_suffix(".png"))
    for arm, values in payload["arms"].items():
        held = ", ".join(f"{p['after']}: {p['pass_rate']:.2f}" for p in values["held_out"])
        console.print(f"{arm}: {values['passed']}/{values['tasks']} solved, "
                      f"mean reward {values['mean_reward']}, held-out pass@1 {held}")  # fmt: skip
    console.print(f"promotions: {payload['promotions']}; written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
