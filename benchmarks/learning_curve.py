"""Learning curve: does learning improve the consumer's prompt on held-out HumanEval problems?

    .venv/bin/python -m benchmarks.learning_curve [--rounds 3] [--algorithm apo|bandit]
        [--train 6] [--val 10] [--offset 20] [--model 0.5b] [--base-url URL]

A fixed, deterministic split of HumanEval problems ``offset .. offset+train+val`` (ordered by a
hash of the task id). Round 0 is the seed prompt's validation score; each round runs one learning
round (APO from agent-lightning with the same local model as its gradient/edit LLM, or the bandit)
and records the active prompt's validation reward and pass rate afterwards. Every task runs
through the real graph (one consumer attempt, temperature 0, template critique). The registry
lives in a fresh data dir (``--data-dir``), so each run starts from the seed prompts.

Writes benchmarks/results/learning_curve.json and learning_curve.png and prints a table.
Without ``--base-url`` it starts the embedded llama.cpp server (8192-token context).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.cli.learn import stop_on_sigterm
from app.services import build_context
from benchmarks.common import begin, saved_figure, write_json
from foundation.settings import Settings
from learning.apo_options import APOOptions
from learning.candidates import humaneval_split, task_items
from learning.learner import (
    RoundReport,
    learning_settings,
    llm_endpoint,
    open_learner,
)
from learning.splits import humaneval_split_tasks
from llm.chat import model_label
from nodes.prompts import CONSUMER_SYSTEM

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithm", choices=("apo", "bandit"), default="apo")
    parser.add_argument("--train", type=int, default=6)
    parser.add_argument("--val", type=int, default=10)
    parser.add_argument("--offset", type=int, default=20, help="first HumanEval problem")
    parser.add_argument("--attempts", type=int, default=1)
    parser.add_argument("--model", default="0.5b", help="local model: 0.5b, 1.5b or a GGUF path")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--base-url", default=None, help="use this OpenAI-compatible endpoint")
    parser.add_argument("--llm-model", default=None, help="model name at --base-url")
    parser.add_argument("--llm", default=None, help="override the provider (e.g. scripted)")
    parser.add_argument("--branch-factor", type=int, default=2)
    parser.add_argument("--gradient-batch", type=int, default=3)
    parser.add_argument("--batch", type=int, default=3, help="bandit: tasks per pull")
    parser.add_argument("--min-gain", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--test",
        type=int,
        default=0,
        help="also score the seed and final prompts on this many further problems (a test set "
        "neither the optimizer nor the promotion gate saw)",
    )
    parser.add_argument(
        "--test-only",
        action="store_true",
        help="only add the --test check to an existing --out result (same split arguments)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "learning_curve.json")
    return parser.parse_args()


def settings_for(args: argparse.Namespace, data_dir: Path) -> Settings:
    """Learning settings for the benchmark's LLM (local model unless told otherwise)."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "local_model": args.model}
    if args.threads:
        overrides["local_model_threads"] = args.threads
    if args.base_url:
        overrides |= {"llm": "openai", "llm_base_url": args.base_url}
        if args.llm_model:
            overrides["llm_model"] = args.llm_model
    else:
        overrides["llm"] = args.llm or "local"
    return learning_settings(Settings(**overrides), args.attempts)


def point(round_no: int, version: str, reward: float, pass_rate: float, n: int) -> dict[str, Any]:
    return {
        "round": round_no,
        "version": version,
        "val_reward": reward,
        "val_pass_rate": pass_rate,
        "n": n,
    }


def chart(result: dict[str, Any], path: Path) -> None:
    """The curve of a result: validation reward and pass rate of the active prompt per round,
    each round's best candidate, promotions, and the seed/final test scores when measured."""

    curve, rounds_data = result["curve"], result["rounds"]
    rounds = [p["round"] for p in curve]
    with saved_figure(path, figsize=(7, 4.2)) as (_, ax):
        ax.plot(rounds, [p["val_reward"] for p in curve], "o-", label="validation reward (active)")
        ax.plot(rounds, [p["val_pass_rate"] for p in curve], "s--", label="validation pass rate")
        cands = [
            (r["round"], r["val_candidate"]["reward"]) for r in rounds_data if r["val_candidate"]
        ]
        if cands:
            ax.scatter(*zip(*cands, strict=True), marker="x", color="grey", label="best candidate")
        for p in curve:
            ax.annotate(p["version"], (p["round"], p["val_reward"]), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8)  # fmt: skip
        for r in rounds_data:
            if r["decision"] == "promoted":
                ax.axvline(r["round"], color="green", alpha=0.15, linewidth=6)
        test = result.get("test")
        if test:
            xs = [rounds[0], rounds[-1]]
            ax.plot(xs, [test["seed"]["reward"], test["final"]["reward"]], "D:", color="purple",
                    label=f"test reward, seed vs final (n={test['seed']['n']})")  # fmt: skip
            ax.plot(xs, [test["seed"]["pass_rate"], test["final"]["pass_rate"]], "v:", color="brown",
                    label="test pass rate, seed vs final")  # fmt: skip
        ax.set_xticks(rounds)
        ax.set_xlabel("round (0 = seed prompt)")
        ax.set_ylim(0, 1.05)
        config = result.get("config", {})
        title = result.get("title") or (
            f"{str(config.get('algorithm', '')).upper()} on consumer.system, "
            f"{config.get('llm_model', '')}, HumanEval val n={len(result['split']['val'])} "
            f"(train {len(result['split']['train'])})"
        )
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")


def test_items(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The committed test split: never seen by the optimizer or the gate."""
    return task_items(humaneval_split_tasks("test", limit=args.test))


def test_check(learner: Any, args: argparse.Namespace, seed: str, final: str) -> dict[str, Any]:
    """Seed and final prompt on the test problems."""
    items = test_items(args)
    out: dict[str, Any] = {"tasks": [i["task"]["task_id"] for i in items]}
    for label, text in (("seed", seed), ("final", final)):
        score, _ = learner.evaluator.evaluate(items, CONSUMER_SYSTEM, text, source="learn-test")
        out[label] = {"reward": score.reward, "pass_rate": score.pass_rate, "n": score.n}
        console.print(f"test {label}: reward {score.reward:.3f} pass {score.pass_rate:.2f}")
    return out


def main() -> None:
    args = parse_args()
    stop_on_sigterm()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("learning").setLevel(logging.INFO)
    if args.test_only:
        test_only(args)
        return
    run = begin(**{k: str(v) for k, v in vars(args).items()})
    random.seed(args.seed)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aimesh-learning-curve-"))
    settings = settings_for(args, data_dir)
    train_tasks, val_tasks = humaneval_split(args.train, args.val, offset=args.offset)
    started = time.perf_counter()
    with llm_endpoint(settings) as (served, optimizer):
        learner = open_learner(
            served,
            task_items(train_tasks),
            task_items(val_tasks),
            services=build_context(served, use_memory=False),
            attempts=args.attempts,
            min_gain=args.min_gain,
            optimizer=optimizer,
            apo=APOOptions(
                branch_factor=args.branch_factor, gradient_batch_size=args.gradient_batch
            ),
            batch=args.batch,
            seed=args.seed,
        )
        registry = learner.registry
        seed = registry.current(CONSUMER_SYSTEM)
        console.print(
            f"model {served.llm_model} at {served.llm_base_url or served.llm}; "
            f"train {[t.task_id for t in train_tasks]}; val {[t.task_id for t in val_tasks]}"
        )
        base = learner.validate(CONSUMER_SYSTEM, seed.text)
        curve = [point(0, seed.version, base.reward, base.pass_rate, base.n)]
        console.print(f"round 0: {seed.version} reward {base.reward:.3f} pass {base.pass_rate:.2f}")
        reports: list[RoundReport] = []
        for _ in range(args.rounds):
            report = learner.run_round(CONSUMER_SYSTEM, args.algorithm)
            reports.append(report)
            after = report.val_after
            curve.append(
                point(report.round, report.active_after, after.reward, after.pass_rate, after.n)
            )
            console.print(
                f"round {report.round}: {report.decision} "
                f"(candidate {report.candidate} "
                f"{report.val_candidate.reward if report.val_candidate else float('nan'):.3f}); "
                f"active {report.active_after} reward {after.reward:.3f} pass {after.pass_rate:.2f}"
                f" [{report.seconds:.0f}s, {report.graph_runs} graph runs, "
                f"{report.cache_hits} cached]"
            )
        final = registry.current(CONSUMER_SYSTEM)
        test = test_check(learner, args, seed.text, final.text) if args.test else None
    seconds = round(time.perf_counter() - started, 1)
    improved = curve[-1]["val_reward"] > curve[0]["val_reward"]
    model = model_label(served)
    result = {
        "benchmark": "learning_curve",
        "title": (
            f"{args.algorithm.upper()} on consumer.system, {model}, "
            f"HumanEval val n={len(val_tasks)} (train {len(train_tasks)})"
        ),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "llm_model": "scripted" if served.llm == "scripted" else served.llm_model,
            "temperature": served.llm_temperature,
            "review_with_llm": served.review_with_llm,
            "data_dir": str(data_dir),
        },
        "split": {
            "train": [t.task_id for t in train_tasks],
            "val": [t.task_id for t in val_tasks],
        },
        "curve": curve,
        "seed": {"version": seed.version, "text": seed.text, **curve[0]},
        "final": {"version": final.version, "text": final.text, **curve[-1]},
        "improved": improved,
        "delta_reward": round(curve[-1]["val_reward"] - curve[0]["val_reward"], 4),
        "delta_pass_rate": round(curve[-1]["val_pass_rate"] - curve[0]["val_pass_rate"], 4),
        "rounds": [r.as_dict() for r in reports],
        "registry": [
            {k: v for k, v in vars(v).items() if k != "m2"}
            for v in registry.history(CONSUMER_SYSTEM)
        ],
        "test": test,
        "total_seconds": seconds,
    }
    result = json.loads(json.dumps(result, default=str))
    write_json(args.out, result, run)
    png = args.out.with_suffix(".png")
    chart(result, png)

    table = Table(title=f"learning curve ({args.algorithm}, {seconds:.0f}s)")
    for column in (
        "round",
        "active",
        "val reward",
        "val pass",
        "decision",
        "candidate",
        "cand reward",
    ):
        table.add_column(column)
    table.add_row(
        "0", seed.version, f"{base.reward:.3f}", f"{base.pass_rate:.2f}", "seed", "-", "-"
    )
    for r, p in zip(reports, curve[1:], strict=True):
        table.add_row(
            str(r.round),
            p["version"],
            f"{p['val_reward']:.3f}",
            f"{p['val_pass_rate']:.2f}",
            r.decision,
            r.candidate or "-",
            f"{r.val_candidate.reward:.3f}" if r.val_candidate else "-",
        )
    console.print(table)
    verdict = "improved" if improved else "did not improve"
    console.print(
        f"seed {seed.version} -> final {final.version}: {verdict} "
        f"(reward {result['delta_reward']:+.3f}, pass rate {result['delta_pass_rate']:+.2f})"
    )
    console.print(f"written {args.out} and {png}")


def test_only(args: argparse.Namespace) -> None:
    """Add the test-set check to an existing result file."""
    run = begin(**{k: str(v) for k, v in vars(args).items()})
    result = json.loads(args.out.read_text())
    settings = settings_for(args, Path(tempfile.mkdtemp(prefix="aimesh-learning-test-")))
    train_tasks, val_tasks = humaneval_split(args.train, args.val, offset=args.offset)
    with llm_endpoint(settings) as (served, _):
        learner = open_learner(
            served,
            task_items(train_tasks),
            task_items(val_tasks),
            services=build_context(served, use_memory=False),
            attempts=args.attempts,
        )
        result["test"] = test_check(learner, args, result["seed"]["text"], result["final"]["text"])
    result.pop("run", None)
    write_json(args.out, json.loads(json.dumps(result, default=str)), run)
    chart(result, args.out.with_suffix(".png"))
    console.print(f"test check added to {args.out} and its chart")


if __name__ == "__main__":
    main()
