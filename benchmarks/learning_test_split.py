"""Does learning transfer to unseen problems? Learn on HumanEval's committed train split with
promotions decided on its validation split (the `Learner` of `aimesh learn`: each plan step's
candidate promoted only on a significant paired gain), then run the seed prompts and the promoted
prompts and skills on the committed TEST split, paired, in the same run (task by task), with the
honest protocol (public feedback only, hidden tests decide). Reports pass@1 of both arms with
Wilson intervals, the difference with a paired bootstrap 95 % interval, the exact McNemar p and
a one-sided sign test (goal: +4 points, p < 0.05). Every round and every test task is kept as a
row when it finishes, so the same command resumes.

    .venv/bin/python -m benchmarks.learning_test_split [--rounds 2] [--train 40] [--val 40]
        [--test N] [--plan apo:consumer.system,skills:consumer.rules,...] [--llm ...] [--fresh]

Writes benchmarks/results/learning_test_split.json and .png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from app.services import build_context
from benchmarks.common import rate_bars, saved_figure
from benchmarks.learning_plan import add_plan_options, parse_plan
from benchmarks.paired_runs import (
    Arm,
    add_penalty_option,
    add_run_options,
    measure,
    outcomes,
    paired_rates,
    rate,
    run_interleaved,
    run_settings,
)
from benchmarks.resumable import ResumableRun
from foundation.settings import Settings
from graph.builder import compile_mesh
from graph.runner import BatchRunner
from graph.state import TaskOutcome
from learning.apo_options import APOOptions
from learning.candidates import humaneval_split, task_items
from learning.learner import Learner, OptimizerLLM, learning_settings, llm_endpoint, open_learner
from learning.splits import humaneval_split_tasks
from llm.chat import model_label
from nodes import NODE_FUNCTIONS
from prompt_registry import Prompt, PromptRegistry

ARMS = ("seed", "learned")
DEFAULT_PLAN = "apo:consumer.system,skills:consumer.rules,skills:consumer.exemplars"
GOAL_POINTS = 0.04
"""Issue #16: the promoted prompt and skills beat the seed on the test split by >= 4 points."""

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_plan_options(parser, DEFAULT_PLAN)
    parser.add_argument("--rounds", type=int, default=2, help="learning rounds of the plan")
    parser.add_argument("--train", type=int, default=40, help="train split tasks (of 40)")
    parser.add_argument("--val", type=int, default=40, help="validation split tasks (of 40)")
    parser.add_argument("--test", type=int, default=None, help="test split tasks (of 84)")
    parser.add_argument("--attempts", type=int, default=3, help="K on the test split")
    parser.add_argument("--learn-attempts", type=int, default=1, help="attempts while learning")
    parser.add_argument("--min-gain", type=float, default=0.01, help="promotion margin")
    parser.add_argument("--branch-factor", type=int, default=2, help="APO edits per round")
    parser.add_argument("--gradient-batch", type=int, default=3, help="APO rollouts/gradient")
    add_run_options(parser, "learning_test_split")
    add_penalty_option(parser)
    return parser.parse_args(argv)


def learner_for(
    served: Settings, optimizer: OptimizerLLM | None, run: ResumableRun, args: argparse.Namespace
) -> Learner:
    """The learner on the committed train/validation splits, its registry in the run folder."""
    train, val = humaneval_split(args.train, args.val)
    return open_learner(
        served, task_items(train), task_items(val),
        services=build_context(served, use_memory=False),
        cache_path=run.folder / "evaluations.jsonl",
        attempts=args.learn_attempts, min_gain=args.min_gain, alpha=args.alpha,
        optimizer=optimizer,
        apo=APOOptions(branch_factor=args.branch_factor, gradient_batch_size=args.gradient_batch),
    )  # fmt: skip


def learn(learner: Learner, run: ResumableRun, args: argparse.Namespace) -> None:
    """Every round of the plan not stored yet (row `round/<n>/<algorithm>:<prompt>`, with the
    active prompts after it)."""
    restore_active(learner.registry, run)
    for number in range(1, args.rounds + 1):
        for algorithm, prompt in parse_plan(args.plan):
            key = f"round/{number}/{algorithm}:{prompt}"
            if run.done(key):
                continue
            report = learner.run_round(prompt, algorithm)
            active = active_prompts(learner.registry)
            run.add(key, {"kind": "round", "number": number, **report.as_dict(), "active": active})
            console.print(
                f"round {number} {algorithm} {prompt}: {report.decision} "
                f"(active {report.active_after}, {report.seconds:.0f} s)"
            )


def active_prompts(registry: PromptRegistry) -> list[list[str]]:
    """The registry's active prompts as rows: [name, version, text]."""
    return [[p.name, p.version, p.text] for p in registry.current_all().values()]


def restore_active(registry: PromptRegistry, run: ResumableRun) -> None:
    """Make the prompts active after the last stored round active again: the registry is not
    committed with the rows, so a run continued on another machine starts from the seeds."""
    rounds = run.of_kind("round")
    for name, _, text in rounds[-1]["active"] if rounds else []:
        if registry.current(name).text != text:
            candidate = registry.add_candidate(name, text, source="restored")
            registry.promote(name, candidate.version, "restored from the run's rows")


def test_arms(served: Settings, learner: Learner, run: ResumableRun, args: Any) -> None:
    """The seed prompts against the learned ones on the test split, task by task."""
    if not run.done("prompts"):  # what learning promoted, fixed for the whole test
        run.add("prompts", {"kind": "prompts", "learned": active_prompts(learner.registry)})
    seed = served.model_copy(update={"data_dir": run.folder / "seed"})
    contexts = {"seed": build_context(seed, use_memory=False),
                "learned": build_context(served, use_memory=False)}  # fmt: skip
    contexts["learned"].prompts = {n: Prompt(n, v, t) for n, v, t in run.rows["prompts"]["learned"]}
    tasks = humaneval_split_tasks("test", limit=args.test)
    with run.checkpointer() as saver:
        graph = compile_mesh(NODE_FUNCTIONS, saver)
        arms = [Arm(arm, BatchRunner(graph, contexts[arm], f"test-{arm}")) for arm in ARMS]
        run_interleaved(run, tasks, arms, args.attempts)


def run_all(run: ResumableRun, args: argparse.Namespace) -> str:
    """Learn, then test; the model's label."""
    settings = learning_settings(run_settings(args, run.folder / "learned"))
    if "apo:" not in args.plan:  # only APO needs the optimizer model: no second local server
        settings = settings.model_copy(update={"optimizer_local_model": settings.local_model})
    with llm_endpoint(settings) as (served, optimizer):
        learner = learner_for(served, optimizer, run, args)
        learn(learner, run, args)
        test_arms(served, learner, run, args)
    return model_label(served)


def arm_rates(values: list[TaskOutcome]) -> dict[str, Any]:
    """One arm's pass@1 of the loop's answer and of its greedy first attempt, and its rows."""
    return {
        "pass_at_1": rate([o.passed for o in values]),
        "greedy_first_attempt": rate([o.first_attempt_passed for o in values]),
        "rows": [o.model_dump() for o in values],
    }


def arm_figures(run: ResumableRun) -> dict[str, Any]:
    """Both arms' figures and the paired differences learned - seed (on the tasks both arms
    finished)."""
    seed, learned = (outcomes(run, arm) for arm in ARMS)
    n = min(len(seed), len(learned))
    seed, learned = seed[:n], learned[:n]
    loop = paired_rates([o.passed for o in seed], [o.passed for o in learned])
    greedy = paired_rates(
        [o.first_attempt_passed for o in seed], [o.first_attempt_passed for o in learned]
    )
    return {
        "tasks": n,
        "arms": {"seed": arm_rates(seed), "learned": arm_rates(learned)},
        "difference": {"pass_at_1": loop, "greedy_first_attempt": greedy},
        "goal": {
            "points": GOAL_POINTS,
            "met": loop["difference"] >= GOAL_POINTS and loop["mcnemar_p"] < 0.05,
        },
    }


def report(run: ResumableRun, model: str) -> dict[str, Any]:
    """The results payload from the stored rows."""
    prompts = run.rows.get("prompts", {}).get("learned", {})
    return {
        "benchmark": "learning_test_split",
        "title": f"Learned vs seed prompts on the HumanEval test split, {model}",
        "arguments": run.manifest["arguments"],
        "rounds": run.of_kind("round"),
        "learned_prompts": prompts,
        **arm_figures(run),
        **run.record(),
    }


def chart(payload: dict[str, Any], path: Path) -> None:
    """Both arms' pass@1 (loop, greedy first attempt) with their 95 % intervals."""
    with saved_figure(path, figsize=(7, 4.2)) as (_, ax):
        series = {metric.replace("_", " "): [payload["arms"][arm][metric] for arm in ARMS]
                  for metric in ("greedy_first_attempt", "pass_at_1")}  # fmt: skip
        rate_bars(ax, list(ARMS), series)
        ax.set_ylabel("pass@1 on the test split (%)")
        ax.set_ylim(0, 105)
        d = payload["difference"]["pass_at_1"]
        ax.set_title(f"{payload['title']}\nn={payload['tasks']}, learned - seed "
                     f"{100 * d['difference']:+.1f} points, McNemar p={d['mcnemar_p']:.3f}",
                     fontsize=9)  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    payload, path = measure(args, lambda run: run_all(run, args), report)
    chart(payload, path.with_suffix(".png"))
    for arm in ARMS:
        figures = payload["arms"][arm]
        console.print(
            f"{arm}: pass@1 {figures['pass_at_1']}, greedy {figures['greedy_first_attempt']}"
        )
    console.print(f"learned - seed: {payload['difference']['pass_at_1']}; goal {payload['goal']}")
    console.print(f"written {path} and its chart")
    return payload


if __name__ == "__main__":
    main()
