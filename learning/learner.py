"""Learning rounds: propose prompt versions (APO or the bandit), validate them on held-out tasks
through the real graph, and promote a version only when it beats the active one there; a losing
candidate stays in the registry as rejected.

`Learner` is what `aimesh learn`, the periodic optimizer and the learning-curve benchmark share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from foundation.settings import Settings
from graph.context import MeshContext
from graph.state import Task
from learning.apo_options import APOOptions
from learning.bandit import Policy, choose, propose_variants
from learning.candidates import MeshEvaluator, Score, TaskItem, item_key, text_label
from learning.hygiene import training_leak
from learning.significance import paired_gain_p
from learning.skills import choose_exemplars, distill_rules
from llm.chat import resolve_provider
from llm.local_model import ensure_model, model_alias
from llm.local_server import LocalModelServer
from nodes.prompts import CONSUMER_ADAPTER, CONSUMER_RULES, SEED_PROMPTS, SKILLS
from prompt_registry.registry import PromptRegistry

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

Algorithm = Literal["apo", "bandit", "skills", "expert-iteration"]
Decision = Literal["promoted", "rejected", "explored", "no-candidate"]


@dataclass
class OptimizerLLM:
    """The OpenAI-compatible endpoint APO uses for textual gradients and edits (or a ready
    `AsyncOpenAI`-like client in `async_client`)."""

    base_url: str
    model: str
    api_key: str = "none"
    timeout_s: float = 300.0
    max_tokens: int = 512
    async_client: Any = None

    def client(self) -> openai.AsyncOpenAI:
        import openai

        if self.async_client is not None:
            client: openai.AsyncOpenAI = self.async_client
            return client
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=1
        )


class AdapterLearning(Protocol):
    """What expert iteration needs (`learning.expert_iteration.WeightsLearning`): propose an
    adapter trained from samples of the training items, and serve every adapter learned."""

    def propose(
        self, evaluator: MeshEvaluator, items: Sequence[TaskItem], active: str
    ) -> tuple[str | None, dict[str, Any]]: ...

    def serving(self, services: MeshContext) -> MeshContext: ...


@dataclass
class RoundReport:
    """One learning round of one prompt: the active version's validation score before, the best
    candidate's, the decision, and the active version after."""

    round: int
    algorithm: str
    prompt: str
    active_before: str
    val_before: Score
    candidate: str | None
    val_candidate: Score | None
    decision: Decision
    active_after: str
    val_after: Score
    rejected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    graph_runs: int = 0
    cache_hits: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("val_before", "val_candidate", "val_after"):
            if data[key] is not None:
                data[key].pop("rewards", None)
        return data


class Learner:
    """Runs learning rounds for prompts in `registry` on fixed train/validation task items.

    Args:
        evaluator: runs task items through the graph (and records the rollouts).
        train: items APO computes gradients on / the bandit pulls arms on.
        val: held-out items every promotion is decided on.
        min_gain: a candidate is promoted only if its validation reward exceeds the active
            version's by more than this (and its pass rate is not lower).
        alpha: ... and only if a paired sign test on the validation tasks gives p <= alpha.
        optimizer: the LLM APO uses for gradients and edits (required for APO only).
        weights: what expert iteration needs to train and serve the consumer's adapter
            (`learning.expert_iteration.WeightsLearning`; required for it only).
    """

    def __init__(
        self,
        evaluator: MeshEvaluator,
        registry: PromptRegistry,
        train: list[TaskItem],
        val: list[TaskItem],
        *,
        min_gain: float = 0.01,
        optimizer: OptimizerLLM | None = None,
        apo: APOOptions | None = None,
        policy: Policy = "ucb1",
        batch: int = 3,
        arms: int = 3,
        seed: int = 0,
        alpha: float = 0.05,
        weights: AdapterLearning | None = None,
    ) -> None:
        if not train or not val:
            raise ValueError("learning needs at least one training and one validation task")
        self.evaluator = evaluator
        self.registry = registry
        self.train = train
        self.val = val
        self.min_gain = min_gain
        self.alpha = alpha
        self.optimizer = optimizer
        self.apo = apo or APOOptions()
        self.policy: Policy = policy
        self.batch = max(1, min(batch, len(train)))
        self.arms = max(2, arms)
        self.rng = random.Random(seed)
        self.train_tasks = [Task.model_validate(i["task"]) for i in train if i.get("task")]
        self.weights = weights
        self.rounds_run = 0
        self.last_apo: Any = None
        """The last APO run (`learning.lightning.APOResult`: evaluations, agent-lightning store)."""

    def validate(self, name: str, text: str) -> Score:
        """The validation score of `text` as prompt `name`."""
        score, _ = self.evaluator.evaluate(self.val, name, text, source="learn-val")
        return score

    def run_round(self, name: str, algorithm: Algorithm = "bandit") -> RoundReport:
        """One round of `algorithm` on prompt `name`."""
        self.rounds_run += 1
        runs, hits = self.evaluator.runs, self.evaluator.cache_hits
        started = time.perf_counter()
        if algorithm == "apo":
            report = self._apo_round(name)
        elif algorithm == "bandit":
            report = self._bandit_round(name)
        elif algorithm == "skills":
            report = self._skills_round(name)
        elif algorithm == "expert-iteration":
            report = self._expert_round(name)
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        report.seconds = round(time.perf_counter() - started, 1)
        report.graph_runs = self.evaluator.runs - runs
        report.cache_hits = self.evaluator.cache_hits - hits
        log.info(
            "round %d %s %s: %s -> %s (%s)",
            report.round,
            algorithm,
            name,
            report.active_before,
            report.active_after,
            report.decision,
        )
        return report

    # -- the gate ----------------------------------------------------------------------------

    def _text(self, name: str, version: str) -> str:
        return self.registry.get(name, version).text

    def _decide(
        self, name: str, candidate: str, cand: Score, active: str, base: Score, algorithm: str
    ) -> Decision:
        """Promote `candidate` iff its validation reward beats the active version's by more than
        `min_gain`, it solves at least as many validation tasks, and the gain is significant (a
        paired sign test on the same tasks, p <= `alpha`); otherwise mark it rejected. (The
        reward has a wall-clock efficiency term, so a margin keeps timing noise from promoting a
        prompt that writes the same code.)"""
        if len(cand.rewards) != cand.n or len(base.rewards) != base.n:
            cand, base = (
                self.validate(name, self._text(name, candidate)),
                self.validate(name, self._text(name, active)),
            )
        p = paired_gain_p(cand.rewards, base.rewards)
        detail = (
            f"{algorithm}: validation reward {cand.reward:.4f} (pass {cand.pass_rate:.2f}) vs "
            f"{active} {base.reward:.4f} (pass {base.pass_rate:.2f}) on {cand.n} tasks, "
            f"paired sign test p={p:.3f}"
        )
        gain = cand.reward > base.reward + self.min_gain and cand.pass_rate >= base.pass_rate
        if gain and p <= self.alpha:
            self.registry.promote(name, candidate, detail)
            return "promoted"
        self.registry.reject(name, candidate, detail)
        return "rejected"

    # -- APO -----------------------------------------------------------------------------------

    def _apo_round(self, name: str) -> RoundReport:
        if self.optimizer is None:
            raise ValueError(
                "APO needs an LLM for textual gradients and edits (an OpenAI-compatible endpoint)"
            )
        from learning.lightning import BoundedChatClient, run_apo

        active = self.registry.current(name)
        knobs = dataclasses.replace(self.apo, max_tokens=self.optimizer.max_tokens)
        client = BoundedChatClient(self.optimizer.client(), knobs.max_tokens)
        errors = self._error_batch(name, active.text)
        result = run_apo(
            self.evaluator, name, active.text, errors, self.val, client,
            self.optimizer.model, knobs,
        )  # fmt: skip
        self.last_apo = result
        seed_eval = result.full_validation(active.text)
        base = (
            Score(seed_eval.reward, seed_eval.pass_rate, seed_eval.n)
            if seed_eval
            else self.validate(name, active.text)
        )
        scored = {
            text: Score(e.reward, e.pass_rate, e.n)
            for text, e in result.full_val.items()
            if text != active.text and text.strip()
        }
        scored, refused = self._hygienic(name, active.version, scored)
        registered = self._register(name, active.version, scored)
        detail = {
            "evaluations": [asdict(e) for e in result.evaluations],
            "apo_seconds": result.seconds,
            "optimizer_calls": result.optimizer_calls,
            "optimizer_failures": result.optimizer_failures,
            "invalid_edits": result.invalid_edits,
            "gradient_items": [item_key(item) for item in errors],
            "candidates": {registered[t]: asdict(s) for t, s in scored.items()},
            "refused": refused,
        }
        if not scored:
            return RoundReport(
                self.rounds_run, "apo", name, active.version, base, None, None,
                "no-candidate", active.version, base, detail=detail,
            )  # fmt: skip
        best_text = max(scored, key=lambda t: scored[t].reward)
        best = registered[best_text]
        decision = self._decide(name, best, scored[best_text], active.version, base, "apo")
        rejected = [] if decision == "promoted" else [best]
        for text, version in registered.items():
            if text != best_text and self.registry.get(name, version).status == "candidate":
                self.registry.reject(name, version, f"apo: lost to {best} on validation")
                rejected.append(version)
        after = self.registry.current(name)
        return RoundReport(
            self.rounds_run,
            "apo",
            name,
            active.version,
            base,
            best,
            scored[best_text],
            decision,
            after.version,
            scored[best_text] if decision == "promoted" else base,
            rejected=rejected,
            detail=detail,
        )

    def _error_batch(self, name: str, text: str) -> list[TaskItem]:
        """The training items APO's textual gradients read: those `text` fails (ProTeGi's error
        minibatch), or, when fewer than a gradient batch fail, the lowest rewarded ones. Random
        batches of a training split the prompt mostly passes give the optimizer nothing to fix."""
        _, traces = self.evaluator.evaluate(self.train, name, text, source="learn-train")
        ranked = sorted(
            zip(self.train, traces, strict=True),
            key=lambda pair: (pair[1].passed, pair[1].rewards.get(name, 0.0)),
        )
        failed = [item for item, trace in ranked if not trace.passed]
        if len(failed) >= self.apo.gradient_batch_size:
            return failed
        return [item for item, _ in ranked[: self.apo.gradient_batch_size]]

    def _hygienic(
        self, name: str, parent: str, scored: dict[str, Score]
    ) -> tuple[dict[str, Score], dict[str, str]]:
        """The candidates that read as general instructions, and the others by version with the
        reason (`learning.hygiene`): kept as rejected, never promoted."""
        clean: dict[str, Score] = {}
        refused: dict[str, str] = {}
        inherited = self.registry.get(name, parent).text
        for text, score in scored.items():
            reason = training_leak(text, self.train_tasks, inherited)
            if reason is None:
                clean[text] = score
                continue
            note = f"hygiene: {reason}"
            version = self.registry.add_candidate(name, text, parent, source="apo", note=note)
            self.registry.reject(name, version.version, note)
            refused[version.version] = reason
        return clean, refused

    def _register(self, name: str, parent: str, scored: dict[str, Score]) -> dict[str, str]:
        """Each APO candidate added to the registry (with the rewards its runs earned), by text."""
        registered: dict[str, str] = {}
        for text, score in scored.items():
            note = f"APO validation reward {score.reward:.4f}, pass rate {score.pass_rate:.2f}"
            prompt = self.registry.add_candidate(name, text, parent, source="apo", note=note)
            self.registry.adopt_rewards(name, text_label(text), prompt.version)
            registered[text] = prompt.version
        return registered

    # -- bandit --------------------------------------------------------------------------------

    def _bandit_round(self, name: str) -> RoundReport:
        active = self.registry.current(name)
        proposed = propose_variants(self.registry, name, wanted=self.arms - 1)
        arms = self.registry.versions(name, "active", "candidate")
        arm = choose(arms, self.policy, self.rng)
        start = ((self.rounds_run - 1) * self.batch) % len(self.train)
        batch = [self.train[(start + i) % len(self.train)] for i in range(self.batch)]
        pulled, _ = self.evaluator.evaluate(batch, name, arm.text, source="learn-train")
        base = self.validate(name, active.text)
        detail: dict[str, Any] = {
            "proposed": [v.version for v in proposed],
            "pulled": arm.version,
            "pull_reward": pulled.reward,
            "arms": {
                a.version: {"n": a.n, "mean": round(a.mean, 4), "status": a.status}
                for a in self.registry.versions(name, "active", "candidate")
            },
        }
        active_now = self.registry.get(name, active.version)
        challengers = [
            a
            for a in self.registry.versions(name, "candidate")
            if a.n >= self.batch and (active_now.n == 0 or a.mean >= active_now.mean)
        ]
        if not challengers:
            return RoundReport(
                self.rounds_run, "bandit", name, active.version, base, None, None,
                "explored", active.version, base, detail=detail,
            )  # fmt: skip
        challenger = max(challengers, key=lambda a: (a.mean, a.n))
        cand = self.validate(name, challenger.text)
        decision = self._decide(name, challenger.version, cand, active.version, base, "bandit")
        return RoundReport(
            self.rounds_run,
            "bandit",
            name,
            active.version,
            base,
            challenger.version,
            cand,
            decision,
            self.registry.current(name).version,
            cand if decision == "promoted" else base,
            rejected=[] if decision == "promoted" else [challenger.version],
            detail=detail,
        )

    # -- skills --------------------------------------------------------------------------------

    def _skills_round(self, name: str) -> RoundReport:
        """Distil a skill from the training runs with the active prompts (rules from their
        recurring failures, or exemplars from their rewarded solutions: `learning.skills`) and
        promote it only through the validation gate."""
        if name not in SKILLS:
            raise ValueError(f"{name!r} is not a skill; skills are {', '.join(SKILLS)}")
        active = self.registry.current(name)
        _, traces = self.evaluator.evaluate(self.train, name, active.text, source="learn-train")
        text = distill_rules(traces) if name == CONSUMER_RULES else choose_exemplars(traces)
        base = self.validate(name, active.text)
        if not text or text == active.text:
            return RoundReport(
                self.rounds_run, "skills", name, active.version, base, None, None,
                "no-candidate", active.version, base,
            )  # fmt: skip
        note = f"distilled from {len(traces)} training runs"
        candidate = self.registry.add_candidate(
            name, text, active.version, source="skills", note=note
        )
        cand = self.validate(name, text)
        decision = self._decide(name, candidate.version, cand, active.version, base, "skills")
        return RoundReport(
            self.rounds_run, "skills", name, active.version, base, candidate.version, cand,
            decision, self.registry.current(name).version,
            cand if decision == "promoted" else base,
            rejected=[] if decision == "promoted" else [candidate.version],
        )  # fmt: skip

    # -- expert iteration --------------------------------------------------------------------

    def _expert_round(self, name: str) -> RoundReport:
        """Train a LoRA adapter on the verified answers of K samples per training task (sampled
        with the active adapter), serve it beside the others, and promote it only through the
        validation gate."""
        if name != CONSUMER_ADAPTER:
            raise ValueError(f"expert iteration learns {CONSUMER_ADAPTER}, not {name!r}")
        if self.weights is None:
            raise ValueError(
                "expert iteration trains the embedded model's weights: it needs --llm local"
            )
        active = self.registry.current(name)
        adapter, detail = self.weights.propose(self.evaluator, self.train, active.text)
        if adapter is None:
            base = self.validate(name, active.text)
            return RoundReport(
                self.rounds_run, "expert-iteration", name, active.version, base, None, None,
                "no-candidate", active.version, base, detail=detail,
            )  # fmt: skip
        self.evaluator.services = self.weights.serving(self.evaluator.services)
        base = self.validate(name, active.text)  # on the server the candidate is judged on
        sampling = detail["sampling"]
        note = (
            f"LoRA from {sampling['examples']} verified answers of {sampling['example_tasks']} "
            f"training tasks (sampled with {active.text or 'the base model'})"
        )
        candidate = self.registry.add_candidate(
            name, adapter, active.version, source="expert-iteration", note=note
        )
        cand = self.validate(name, adapter)
        decision = self._decide(
            name, candidate.version, cand, active.version, base, "expert-iteration"
        )
        return RoundReport(
            self.rounds_run, "expert-iteration", name, active.version, base, candidate.version,
            cand, decision, self.registry.current(name).version,
            cand if decision == "promoted" else base,
            rejected=[] if decision == "promoted" else [candidate.version], detail=detail,
        )  # fmt: skip


# -- wiring helpers ------------------------------------------------------------------------------


def open_learner(
    settings: Settings,
    train: list[TaskItem],
    val: list[TaskItem],
    *,
    data_dir: Path | None = None,
    services: MeshContext,
    attempts: int = 1,
    cache: bool | None = None,
    cache_path: Path | None = None,
    **options: Any,
) -> Learner:
    """A `Learner` on the learning store of `data_dir` (default: the settings' data dir), running
    the graph with `services` (the entry point builds them without memory, so that every
    candidate is evaluated alike and no evaluation leaks into the next through memory). Outcomes
    are cached when the LLM is deterministic (temperature 0), also in `cache_path` when given
    (`MeshEvaluator`). `options` go to `Learner`."""
    registry = PromptRegistry.for_settings(settings, SEED_PROMPTS, data_dir)
    evaluator = MeshEvaluator(
        services,
        db=registry.db,
        registry=registry,
        attempts=attempts,
        cache=settings.llm_temperature == 0.0 if cache is None else cache,
        cache_path=cache_path,
    )
    return Learner(evaluator, registry, train, val, **options)


def learning_settings(settings: Settings, attempts: int = 1) -> Settings:
    """The settings evaluation runs use: deterministic LLM (temperature 0), template critiques
    (the reviewer's LLM critique does not change the reward), `attempts` consumer attempts."""
    return settings.model_copy(
        update={"llm_temperature": 0.0, "review_with_llm": False, "max_attempts": attempts}
    )


@contextlib.contextmanager
def llm_endpoint(
    settings: Settings, n_ctx: int = 8192
) -> Iterator[tuple[Settings, OptimizerLLM | None]]:
    """Settings pointing the mesh (the actor) at a concrete LLM, and the optimizer's endpoint.

    The actor: local starts the embedded llama.cpp server for the duration; openai uses the
    configured endpoint; scripted has no endpoint (and no optimizer unless one is configured).
    The optimizer is its own model (`optimizer_base_url`, else the actor's remote endpoint, else
    a second local server with `optimizer_local_model`, `n_ctx` tokens for APO's prompts).
    """
    provider = resolve_provider(settings)
    with contextlib.ExitStack() as stack:
        served = settings
        if provider == "local":
            server = stack.enter_context(_local_server(settings, settings.local_model, n_ctx))
            served = server.client_settings(settings)
        yield served, stack.enter_context(_optimizer(settings, served, provider, n_ctx))


@contextlib.contextmanager
def _optimizer(
    settings: Settings, served: Settings, provider: str, n_ctx: int
) -> Iterator[OptimizerLLM | None]:
    """The optimizer's endpoint (see `llm_endpoint`)."""
    timeout = settings.llm_timeout_s
    if settings.optimizer_base_url:
        model = settings.optimizer_model or settings.llm_model
        yield OptimizerLLM(settings.optimizer_base_url, model, _api_key(settings), timeout)
    elif provider == "scripted":
        yield None
    elif provider == "openai":
        model = settings.optimizer_model or settings.llm_model
        url = settings.llm_base_url or "https://api.openai.com/v1"
        yield OptimizerLLM(url, model, _api_key(settings), timeout)
    elif settings.optimizer_local_model == settings.local_model:
        yield OptimizerLLM(str(served.llm_base_url), served.llm_model, "local", timeout)
    else:
        with _local_server(settings, settings.optimizer_local_model, n_ctx) as server:
            yield OptimizerLLM(server.base_url, server.alias, "local", timeout)


def _local_server(settings: Settings, model: str, n_ctx: int) -> LocalModelServer:
    return LocalModelServer(
        ensure_model(model, settings.cache_dir),
        cache_dir=settings.cache_dir,
        alias=model_alias(model),
        threads=settings.local_model_threads,
        n_ctx=n_ctx,
        parallel=1,  # one optimizer call at a time, with a long context
    )


def _api_key(settings: Settings) -> str:
    secret = settings.llm_api_key
    return secret.get_secret_value() if secret else os.environ.get("OPENAI_API_KEY", "none")
