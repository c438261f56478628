"""`aimesh learn`: learning rounds (APO or the bandit) and the prompt registry.

Mount with ``app.add_typer(learn_app, name="learn")``. ``aimesh learn [OPTIONS]`` runs rounds;
``aimesh learn status | history [NAME] | show NAME [VERSION] | promote NAME VERSION | rollback NAME``
inspect and steer the registry.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.cli.common import DataDirOption, LlmOption, compact_table, fail, settings_with
from app.services import build_context
from foundation.errors import InfrastructureError
from foundation.settings import Settings
from learning.apo_options import APOOptions
from learning.candidates import humaneval_split, producer_items, task_items
from learning.learner import RoundReport, learning_settings, llm_endpoint, open_learner
from llm.chat import model_label, resolve_provider
from nodes.prompts import (
    CONSUMER_ADAPTER,
    CONSUMER_SYSTEM,
    PRODUCER_SYSTEM,
    SEED_PROMPTS,
    SKILLS,
)
from prompt_registry.registry import PromptRegistry

Algorithm = Literal["apo", "bandit", "skills", "expert-iteration"]
LearnAlgorithm = Literal["bandit", "expert-iteration"]
"""What `aimesh run --learn-every` can run."""
Policy = Literal["ucb1", "thompson"]

if TYPE_CHECKING:
    from learning.expert_iteration import WeightsLearning

learn_app = typer.Typer(
    help="Self-learning: optimize prompts on HumanEval through the graph; inspect and roll back "
    "prompt versions.",
)
console = Console(soft_wrap=True)  # texts verbatim: a prompt is printed as it is stored


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so context managers (the local model server) clean up."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _registry(data_dir: Path | None) -> PromptRegistry:
    return PromptRegistry.for_settings(settings_with(data_dir=data_dir), SEED_PROMPTS)


def _known(registry: PromptRegistry, name: str) -> str:
    """`name` if the registry has that prompt; else a usage error listing the prompts it has."""
    names = sorted(registry.names())
    if name not in names:
        raise fail(f"no prompt named {name!r}; the prompts are: {', '.join(names)}")
    return name


@learn_app.callback(invoke_without_command=True)
def learn(
    ctx: typer.Context,
    rounds: Annotated[int, typer.Option(min=1, help="learning rounds")] = 3,
    algorithm: Annotated[
        Algorithm,
        typer.Option(
            help="apo or bandit (prompts), skills (consumer.rules, consumer.exemplars), "
            "expert-iteration (consumer.adapter: a LoRA adapter of the embedded model's weights)"
        ),
    ] = "apo",
    train: Annotated[int, typer.Option(min=1, help="training tasks")] = 6,
    val: Annotated[int, typer.Option(min=1, help="held-out validation tasks")] = 8,
    prompt: Annotated[
        list[str] | None,
        typer.Option(
            help="what to optimize: consumer.system (default), producer.system; with skills: "
            "consumer.rules, consumer.exemplars; with expert-iteration: consumer.adapter"
        ),
    ] = None,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="consumer attempts per task")] = 1,
    offset: Annotated[
        int, typer.Option(min=0, help="position in the committed train/validation splits")
    ] = 0,
    min_gain: Annotated[float, typer.Option(help="promotion margin on validation reward")] = 0.01,
    alpha: Annotated[
        float, typer.Option(help="promotion needs a paired sign test p <= alpha on validation")
    ] = 0.05,
    branch_factor: Annotated[int, typer.Option(min=1, help="APO edits per round")] = 2,
    beam_width: Annotated[int, typer.Option(min=1, help="APO beam width")] = 1,
    gradient_batch: Annotated[int, typer.Option(min=1, help="APO rollouts per gradient")] = 3,
    samples: Annotated[
        int, typer.Option(min=1, max=16, help="expert iteration: answers per training task")
    ] = 4,
    policy: Annotated[Policy, typer.Option(help="the bandit's policy")] = "ucb1",
    batch: Annotated[int, typer.Option(min=1, help="bandit: training tasks per pull")] = 3,
    llm: LlmOption = None,
    optimizer_base_url: Annotated[
        str | None,
        typer.Option(help="APO's OpenAI-compatible endpoint [default: AIMESH_OPTIMIZER_BASE_URL]"),
    ] = None,
    optimizer_model: Annotated[str | None, typer.Option(help="APO's model name")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the rounds here")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run learning rounds: propose prompt versions, validate on held-out tasks through the graph,
    promote only what beats the active version (else keep it as rejected)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        options = LearnOptions(
            rounds=rounds, algorithm=algorithm, train=train, val=val,
            prompts=prompt or [_default_prompt(algorithm)], attempts=attempts, offset=offset,
            samples=samples,
            min_gain=min_gain, alpha=alpha, policy=policy, batch=batch,
            apo=APOOptions(
                beam_width=beam_width, branch_factor=branch_factor,
                gradient_batch_size=gradient_batch,
            ),
        )  # fmt: skip
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise typer.BadParameter(f"{error['loc'][0]}: {error['msg']}") from None
    settings = learning_settings(
        settings_with(
            llm=llm,
            optimizer_base_url=optimizer_base_url,
            optimizer_model=optimizer_model,
            data_dir=data_dir,
        ),
        attempts,
    )
    stop_on_sigterm()
    reports = run_learning(options, settings)
    console.print(_rounds_table(reports))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([r.as_dict() for r in reports], indent=2, default=str))
        console.print(f"rounds written to {json_out}")


class LearnOptions(BaseModel):
    """What `aimesh learn` was asked to do."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rounds: int
    algorithm: Algorithm
    train: int
    val: int
    prompts: list[
        Literal[
            "consumer.system",
            "producer.system",
            "consumer.rules",
            "consumer.exemplars",
            "consumer.adapter",
        ]
    ]
    attempts: int
    offset: int
    min_gain: float
    alpha: float
    policy: Policy
    batch: int
    samples: int = 4
    apo: APOOptions


def _default_prompt(algorithm: Algorithm) -> str:
    return CONSUMER_ADAPTER if algorithm == "expert-iteration" else CONSUMER_SYSTEM


def run_learning(options: LearnOptions, settings: Settings) -> list[RoundReport]:
    """Run the rounds on the committed HumanEval splits (or tasks the producer invents, for its
    prompt), one learner per prompt; every round's report."""
    train_tasks, val_tasks = humaneval_split(options.train, options.val, offset=options.offset)
    items = {
        CONSUMER_SYSTEM: (task_items(train_tasks), task_items(val_tasks)),
        PRODUCER_SYSTEM: (
            producer_items(options.train),
            producer_items(options.val, start=options.train),
        ),
    }
    for skill in (*SKILLS, CONSUMER_ADAPTER):  # they shape the consumer's answers
        items[skill] = items[CONSUMER_SYSTEM]
    reports = []
    with contextlib.ExitStack() as stack:
        if options.algorithm == "expert-iteration":
            served, optimizer, weights = _weights_endpoint(stack, settings, options)
        else:
            served, optimizer = stack.enter_context(llm_endpoint(settings))
            weights = None
        if options.algorithm == "apo" and optimizer is None:
            raise OptimizerMissingError(
                "APO needs an LLM for its textual gradients: pass --optimizer-base-url, use a "
                "real LLM, or --algorithm bandit"
            )
        for name in options.prompts:
            learner = open_learner(
                served,
                *items[name],
                services=build_context(served, use_memory=False),
                attempts=options.attempts,
                min_gain=options.min_gain,
                alpha=options.alpha,
                optimizer=optimizer,
                apo=options.apo,
                policy=options.policy,
                batch=options.batch,
                weights=weights,
            )
            console.print(
                f"[bold]{name}[/]: {options.algorithm}, {len(items[name][0])} training / "
                f"{len(items[name][1])} validation tasks, model {escape(model_label(served))}"
            )
            for _ in range(options.rounds):
                report = learner.run_round(name, options.algorithm)
                reports.append(report)
                console.print(_round_line(report))
    return reports


def _weights_endpoint(
    stack: contextlib.ExitStack, settings: Settings, options: LearnOptions
) -> tuple[Settings, None, WeightsLearning]:
    """For expert iteration: the embedded server with the learned adapters (restarted when one
    more is learned), and what trains them."""
    weights = expert_iteration_weights(stack, settings, samples=options.samples)
    return weights.serve(), None, weights


def expert_iteration_weights(
    stack: contextlib.ExitStack, settings: Settings, samples: int = 4
) -> WeightsLearning:
    """What expert iteration trains and serves adapters with, its model server closed with
    `stack`. Only the embedded model's weights can be trained."""
    if resolve_provider(settings) != "local":
        raise ExpertIterationNeedsLocalError(
            "expert iteration trains the embedded model's weights: use --llm local (or leave "
            "AIMESH_LLM_BASE_URL unset)"
        )
    from learning.expert_iteration import AdapterHost, ExpertIterationOptions, WeightsLearning

    host = stack.enter_context(AdapterHost(settings))
    return WeightsLearning(settings, host, ExpertIterationOptions(samples=samples))


class ExpertIterationNeedsLocalError(InfrastructureError):
    """Expert iteration was asked for with a model whose weights are not ours to train."""


class OptimizerMissingError(InfrastructureError):
    """APO was asked for without an optimizer model."""


def _round_line(report: Any) -> str:
    cand = (
        f"{report.candidate} {report.val_candidate.reward:.3f}"
        if report.val_candidate is not None
        else "-"
    )
    return (
        f"round {report.round}: {report.active_before} {report.val_before.reward:.3f} "
        f"(pass {report.val_before.pass_rate:.2f}) vs {cand} -> [bold]{report.decision}[/], "
        f"active {report.active_after} ({report.seconds:.0f}s, {report.graph_runs} runs)"
    )


def _rounds_table(reports: list[Any]) -> Table:
    """One row per round (a promoted round's candidate is the new active version)."""
    algorithms = ", ".join(sorted({r.algorithm for r in reports}))
    table = compact_table(
        f"learning rounds ({algorithms})", "#", "prompt", "active", "reward", "pass",
        "candidate", "reward", "decision", "s",
    )  # fmt: skip
    for r in reports:
        table.add_row(
            str(r.round), r.prompt, r.active_before, f"{r.val_before.reward:.3f}",
            f"{r.val_before.pass_rate:.2f}", r.candidate or "-",
            f"{r.val_candidate.reward:.3f}" if r.val_candidate else "-", r.decision,
            f"{r.seconds:.0f}",
        )  # fmt: skip
    return table


@learn_app.command()
def status(
    data_dir: DataDirOption = None,
) -> None:
    """The active version of every prompt, with its reward statistics."""
    registry = _registry(data_dir)
    table = compact_table(
        "active prompt versions", "prompt", "version", "source", "rewards", "mean", "candidates",
        "rejected",
    )  # fmt: skip
    for name in sorted(registry.names()):
        active = registry.get(name, registry.current(name).version)
        table.add_row(
            name,
            active.version,
            active.source,
            str(active.n),
            f"{active.mean:.3f}",
            str(len(registry.versions(name, "candidate"))),
            str(len(registry.versions(name, "rejected"))),
        )
    console.print(table)


@learn_app.command()
def history(
    name: Annotated[
        str | None, typer.Argument(help="prompt name, e.g. consumer.system [default: every prompt]")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every version of a prompt (of every prompt without NAME): lineage, status, rewards."""
    registry = _registry(data_dir)
    names = [_known(registry, name)] if name else sorted(registry.names())
    table = compact_table(
        f"{name} versions" if name else "prompt versions",
        *("prompt", "version", "parent", "status", "source", "rewards", "mean", "note"),
        wrap={"note"},
    )
    for v in (v for n in names for v in registry.history(n)):
        table.add_row(
            v.name, v.version, v.parent or "-", v.status, v.source, str(v.n), f"{v.mean:.3f}",
            escape(v.note),
        )  # fmt: skip
    console.print(table)


@learn_app.command()
def show(
    name: Annotated[str, typer.Argument(help="prompt name")],
    version: Annotated[str | None, typer.Argument(help="version (default: the active one)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print a prompt version's text."""
    registry = _registry(data_dir)
    v = registry.get(_known(registry, name), version or registry.current(name).version)
    console.print(f"[bold]{escape(v.name)} {escape(v.version)}[/] ({v.status})", highlight=False)
    console.print(v.text, markup=False, highlight=False)


@learn_app.command()
def promote(
    name: Annotated[str, typer.Argument(help="prompt name")],
    version: Annotated[str, typer.Argument(help="version to activate")],
    data_dir: DataDirOption = None,
) -> None:
    """Activate a version by hand (the previous active one is retired)."""
    registry = _registry(data_dir)
    prompt = registry.promote(_known(registry, name), version, "manual")
    console.print(f"{prompt.name} is now {prompt.version}")


@learn_app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="prompt name")],
    data_dir: DataDirOption = None,
) -> None:
    """Re-activate the previous active version (the current one is marked rejected)."""
    registry = _registry(data_dir)
    prompt = registry.rollback(_known(registry, name), "manual rollback")
    console.print(f"{prompt.name} rolled back to {prompt.version}")
