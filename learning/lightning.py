"""The agent-lightning bridge (agentlightning 0.3.x): the mesh as a `LitAgent`, APO with the mesh's
rollouts, and a `Trainer` on the shared-memory execution strategy.

Importing this module imports agent-lightning (several seconds): only learning code paths do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("AGENTOPS_LOGGING_TO_FILE", "False")

import agentlightning as agl
import openai
from agentlightning.algorithm.apo import APO
from agentlightning.execution.shared_memory import SharedMemoryExecutionStrategy
from openai.types.chat import ChatCompletion

from foundation.errors import InfrastructureError
from learning.apo_options import APOOptions
from learning.candidates import MeshEvaluator, TaskItem
from learning.rollouts import RolloutTrace

log = logging.getLogger(__name__)

REWARD_KEY = "agentlightning.reward"


def to_agl_spans(trace: RolloutTrace, reward_for: str | None = None) -> list[Any]:
    """The rollout as agent-lightning `SpanCoreFields` (node and LLM spans, then the reward span
    made by `agentlightning.emit_reward`). The primary reward is the one earned by prompt
    `reward_for` (default: the mesh reward); the other dimensions are the mesh reward, pass/fail
    and the review's component scores."""
    out: list[Any] = []
    for span in trace.spans:
        if span.kind == "reward":
            continue
        out.append(
            agl.SpanCoreFields(
                name=span.name,
                status=agl.TraceStatus(
                    status_code="ERROR" if "aimesh.error" in span.attributes else "OK"
                ),
                attributes=dict(span.attributes),
                start_time=span.start,
                end_time=span.end,
            )
        )
    primary = trace.rewards.get(reward_for, 0.0) if reward_for else (trace.reward or 0.0)
    dims: dict[str, float] = {"reward": float(primary), "mesh_reward": float(trace.reward or 0.0)}
    dims["passed"] = 1.0 if trace.passed else 0.0
    dims.update({k: float(v) for k, v in trace.scores.items()})
    out.append(agl.emit_reward(dims, primary_key="reward", propagate=False))
    return out


class MeshAgent(agl.LitAgent):
    """One rollout = one task item through the real graph, with the prompt resource
    `resource_name` (a PromptTemplate) as that prompt's text. Returns the rollout's spans (node
    steps, LLM calls) and its reward span, which the runner adds to the LightningStore."""

    def __init__(self, evaluator: MeshEvaluator, resource_name: str) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.resource_name = resource_name

    async def rollout_async(self, task: TaskItem, resources: dict[str, Any], rollout: Any) -> Any:
        template = resources[self.resource_name]
        text = str(getattr(template, "template", template))
        trace = await asyncio.to_thread(
            self.evaluator.run_one, task, {self.resource_name: text}, f"learn-{rollout.mode}"
        )
        if self.evaluator.db is not None:
            await asyncio.to_thread(
                _link, self.evaluator, trace.rollout_id, str(rollout.rollout_id)
            )
        return to_agl_spans(trace, reward_for=self.resource_name)


def _link(evaluator: MeshEvaluator, rollout_id: str, agl_rollout_id: str) -> None:
    with evaluator.db.transaction() as conn:
        conn.execute(
            "UPDATE rollouts SET agl_rollout_id = ? WHERE rollout_id = ?",
            (agl_rollout_id, rollout_id),
        )


@dataclass
class PromptEvaluation:
    """One APO evaluation of a prompt text on a batch of task items."""

    version: str
    text: str
    mode: str
    n: int
    expected: int
    reward: float
    pass_rate: float


def reward_dimensions(span: Any) -> dict[str, float]:
    """The reward span's dimensions (`emit_reward`'s attributes) of a span or its dump; {} for
    any other span."""
    attrs = (span.get("attributes") if isinstance(span, dict) else span.attributes) or {}
    dims: dict[str, float] = {}
    i = 0
    while f"{REWARD_KEY}.{i}.name" in attrs:
        dims[str(attrs[f"{REWARD_KEY}.{i}.name"])] = float(attrs[f"{REWARD_KEY}.{i}.value"])
        i += 1
    return dims


def _slim_span(span: dict[str, Any]) -> dict[str, Any]:
    """What the textual-gradient prompt needs of a span: name, status and attributes."""
    status = span.get("status") or {}
    return {
        "name": span.get("name"),
        "status": status.get("status_code") if isinstance(status, dict) else str(status),
        "attributes": span.get("attributes") or {},
    }


_FENCED = re.compile(r"```[A-Za-z]*\n(.*?)\n?```", re.S)
_LABEL = re.compile(
    r"^(?:#+\s*|\*\*)?(?:revised|improved|new|updated|final)?\s*prompt(?:\s+template)?\s*:?(?:\*\*)?\s*\n",
    re.I,
)
_FUNCTION = re.compile(r"^\s*def \w+\(.*\)\s*(?:->.*)?:\s*$", re.M)


def clean_prompt(text: str | None, max_chars: int = 4000) -> str | None:
    """An edit's text as a usable system prompt, or None when it is not one: unwraps a single
    fenced block and a leading "Revised prompt:" label; refuses empty or oversized texts and texts
    that define a Python function (a small optimizer model often answers with code)."""
    if not text or not text.strip():
        return None
    cleaned = text.strip()
    fenced = _FENCED.fullmatch(cleaned)
    if fenced:
        cleaned = fenced.group(1).strip()
    cleaned = _LABEL.sub("", cleaned, count=1).strip()
    if len(cleaned) < 20 or len(cleaned) > max_chars or _FUNCTION.search(cleaned):
        return None
    return cleaned


class MeshAPO(APO):
    """agent-lightning's APO, with three adaptations for the mesh: every evaluation (text, mode,
    reward, pass rate) is recorded; the gradient model sees compact spans (name, status,
    attributes) instead of full dumps; an edit that is not a usable prompt (`clean_prompt`) is
    retried up to `edit_attempts` times and otherwise dropped before costing validation runs."""

    def __init__(self, *args: Any, edit_attempts: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edit_attempts = edit_attempts
        self.evaluations: list[PromptEvaluation] = []
        self.invalid_edits: list[str] = []

    async def textual_gradient_and_apply_edit(
        self, current_prompt: Any, rollout: Any, *, prefix: str | None = None
    ) -> str | None:
        current = str(current_prompt.prompt_template.template)
        for attempt in range(self.edit_attempts):
            proposal = await super().textual_gradient_and_apply_edit(
                current_prompt, rollout, prefix=prefix
            )
            cleaned = clean_prompt(proposal)
            if cleaned is not None and cleaned != current:
                return cleaned
            self.invalid_edits.append((proposal or "")[:300])
            log.info("APO edit %d/%d is not a usable prompt", attempt + 1, self.edit_attempts)
        return None

    async def get_rollout_results(self, rollout: Any, *, prefix: str | None = None) -> Any:
        results = await super().get_rollout_results(rollout, prefix=prefix)
        for result in results:
            result["spans"] = [_slim_span(s) for s in result["spans"]]
        return results

    async def evaluate_prompt_on_batch(
        self, prompt: Any, resource_name: str, dataset: Any, mode: Any, *, prefix: str | None = None
    ) -> Any:
        results, average = await super().evaluate_prompt_on_batch(
            prompt, resource_name, dataset, mode, prefix=prefix
        )
        passes = []
        for result in results:
            dims = [reward_dimensions(s) for s in result["spans"]]
            passes += [d["passed"] for d in dims if "passed" in d][-1:]
        self.evaluations.append(
            PromptEvaluation(
                version=prompt.version,
                text=prompt.prompt_template.template,
                mode=str(mode),
                n=len(results),
                expected=len(dataset),
                reward=round(float(average), 4),
                pass_rate=round(sum(passes) / len(passes), 4) if passes else 0.0,
            )
        )
        return results, average


class OptimizerUnavailableError(InfrastructureError):
    """The prompt optimizer's endpoint cannot be reached (an outage, not an empty answer)."""


class BoundedChatClient:
    """Stands in for `AsyncOpenAI` inside APO: caps every completion at `max_tokens` (llama.cpp's
    server would otherwise generate until its context is full) and turns a refused request
    (context overflow) into an empty answer, which APO treats as "no critique / no edit". An
    unreachable or failing endpoint is an outage: it is kept in `outage` and raised."""

    def __init__(self, client: openai.AsyncOpenAI, max_tokens: int = 512) -> None:
        self._client = client
        self.max_tokens = max_tokens
        self.calls = 0
        self.failures = 0
        self.outage: OptimizerUnavailableError | None = None
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    async def _create(self, **kwargs: Any) -> ChatCompletion:
        kwargs.setdefault("max_tokens", self.max_tokens)
        self.calls += 1
        try:
            completion: ChatCompletion = await self._client.chat.completions.create(**kwargs)
            return completion
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            self.outage = OptimizerUnavailableError(
                f"the prompt optimizer's endpoint failed: {exc}"
            )
            raise self.outage from None
        except openai.APIError as exc:
            self.failures += 1
            log.warning("optimizer LLM call failed (%s); treated as an empty answer", exc)
            return ChatCompletion.model_validate(
                {
                    "id": "aimesh-empty",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": str(kwargs.get("model", "")),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": ""},
                        }
                    ],
                }
            )


@dataclass
class APOResult:
    """What one APO run found: every evaluation it made, and the store holding its rollouts."""

    resource_name: str
    seed_text: str
    evaluations: list[PromptEvaluation]
    best_text: str
    store: Any
    seconds: float
    optimizer_calls: int = 0
    optimizer_failures: int = 0
    invalid_edits: list[str] = field(default_factory=list)
    full_val: dict[str, PromptEvaluation] = field(default_factory=dict)

    def full_validation(self, text: str) -> PromptEvaluation | None:
        """The last evaluation of `text` on the whole validation set."""
        return self.full_val.get(text)


_SHARED_TRACER: Any = None


def tracer() -> Any:
    """One OtelTracer per process (OpenTelemetry's tracer provider can be set only once)."""
    global _SHARED_TRACER
    if _SHARED_TRACER is None:
        _SHARED_TRACER = agl.OtelTracer()
    return _SHARED_TRACER


def run_apo(
    evaluator: MeshEvaluator,
    resource_name: str,
    seed_text: str,
    train: list[TaskItem],
    val: list[TaskItem],
    client: openai.AsyncOpenAI | BoundedChatClient,
    model: str,
    options: APOOptions | None = None,
) -> APOResult:
    """One agent-lightning APO run over prompt `resource_name`, starting from `seed_text`:
    textual gradients from training rollouts, edits, every candidate validated on the whole
    validation set (val_batch_size = len(val)). Runs a `Trainer` with the shared-memory strategy
    (algorithm on this thread, one runner thread polling every 50 ms)."""
    knobs = options or APOOptions()
    bounded = (
        client
        if isinstance(client, BoundedChatClient)
        else BoundedChatClient(client, knobs.max_tokens)
    )
    apo = MeshAPO(
        bounded,
        gradient_model=model,
        apply_edit_model=model,
        diversity_temperature=knobs.diversity_temperature,
        gradient_batch_size=min(knobs.gradient_batch_size, len(train)),
        val_batch_size=len(val),
        beam_width=knobs.beam_width,
        branch_factor=knobs.branch_factor,
        beam_rounds=knobs.beam_rounds,
        rollout_batch_timeout=knobs.rollout_timeout_s,
        run_initial_validation=True,
        edit_attempts=knobs.edit_attempts,
    )
    shared = tracer()
    store = agl.InMemoryLightningStore()
    trainer = agl.Trainer(
        algorithm=apo,
        store=store,
        tracer=shared,
        adapter=agl.TraceToMessages(),
        runner=agl.LitAgentRunner(tracer=shared, poll_interval=0.05, interval_jitter=0.01),
        strategy=SharedMemoryExecutionStrategy(
            n_runners=1, main_thread="algorithm", poll_interval=0.05, graceful_delay=2.0
        ),
        initial_resources={
            resource_name: agl.PromptTemplate(template=seed_text, engine="f-string")
        },
    )
    started = time.perf_counter()
    trainer.fit(MeshAgent(evaluator, resource_name), train_dataset=train, val_dataset=val)
    if bounded.outage is not None:  # raised inside APO's tasks, which may have swallowed it
        raise bounded.outage
    full_val = {
        e.text: e for e in apo.evaluations if e.mode == "val" and e.n == len(val) == e.expected
    }
    return APOResult(
        resource_name=resource_name,
        seed_text=seed_text,
        evaluations=list(apo.evaluations),
        best_text=str(apo.get_best_prompt().template),
        store=store,
        seconds=round(time.perf_counter() - started, 1),
        optimizer_calls=bounded.calls,
        optimizer_failures=bounded.failures,
        invalid_edits=list(apo.invalid_edits),
        full_val=full_val,
    )


async def store_rewards(store: Any) -> list[tuple[str, str, float | None]]:
    """(rollout id, mode, final reward) of every rollout in an agent-lightning store."""
    out = []
    for rollout in await store.query_rollouts():
        spans = await store.query_spans(rollout.rollout_id)
        out.append((rollout.rollout_id, str(rollout.mode), agl.find_final_reward(spans)))
    return out
