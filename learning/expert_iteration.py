"""Expert iteration into the consumer's weights (rejection-sampling fine-tuning: STaR, ReST-EM)
as an agent-lightning 0.3 algorithm beside APO.

One round: the consumer answers every training task `samples` times at a temperature, each
answer a run through the real graph (one agent-lightning rollout per task, `SamplingAgent`, its
K runs decoded together in the server's slots);
the answers whose hidden tests all pass are read back through agent-lightning's
`TraceToMessages` adapter and filtered (`learning.sft_data`); a LoRA adapter is trained on them
(`learning.lora_training`) and converted for llama-server. Whether the adapter is promoted is
the learner's gate's business, not the algorithm's.

Importing this module imports agent-lightning (several seconds): only learning code paths do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from foundation.settings import Settings
from graph.context import MeshContext
from graph.state import Task
from learning.candidates import MeshEvaluator, TaskItem
from learning.lightning import SharedMemoryExecutionStrategy, agl, to_agl_spans, tracer
from learning.lora_training import (
    BaseModel,
    LoraOptions,
    TrainingReport,
    export_adapter,
    load_base,
    train_adapter,
)
from learning.sft_data import Message, Sample, Selection, select_examples
from llm.chat import make_chat_model
from llm.engine_build import find_engine
from llm.local_model import ensure_model
from llm.local_server import LocalModelServer
from llm.lora import adapters_dir, learned_adapters
from nodes.prompts import CONSUMER_ADAPTER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpertIterationOptions:
    """How a round samples and what it keeps."""

    samples: int = 4
    """Answers per training task (K)."""
    temperature: float = 0.8
    per_task: int = 2
    """At most this many verified answers of one task are kept (balance)."""
    held_out: tuple[str, ...] = ()
    """Produced task ids kept for evaluation: never trained on."""
    rollout_timeout_s: float = 7200.0
    lora: LoraOptions = field(default_factory=LoraOptions)


@dataclass
class RoundData:
    """What a round's sampling gave: every sample's verdict, and the examples chosen."""

    samples: list[Sample]
    selection: Selection
    seconds: float

    @property
    def solved(self) -> int:
        return sum(s.passed for s in self.samples)

    def summary(self) -> dict[str, Any]:
        tasks = {s.task.task_id for s in self.samples if s.task is not None}
        solved = {s.task.task_id for s in self.samples if s.task is not None and s.passed}
        return {
            "samples": len(self.samples),
            "samples_passed": self.solved,
            "tasks": len(tasks),
            "tasks_with_a_pass": len(solved),
            "seconds": round(self.seconds, 1),
            **self.selection.as_dict(),
        }


SAMPLE = "aimesh.sample"
SAMPLE_PASSED = "aimesh.sample.passed"
SAMPLE_REWARD = "aimesh.sample.reward"


class SamplingAgent(agl.LitAgent):
    """One rollout = one training task answered K times at once through the real graph, with
    the adapter the resource `consumer.adapter` names. Every span carries its sample's number
    and verdict (one agent-lightning runner at a time: its tracer is process-wide, so the K
    answers run in threads inside the rollout); the rollout's reward is the share that passed."""

    def __init__(self, evaluator: MeshEvaluator, samples: int) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.samples = samples

    async def rollout_async(self, task: TaskItem, resources: dict[str, Any], rollout: Any) -> Any:
        adapter = str(getattr(resources[CONSUMER_ADAPTER], "template", ""))
        traces = await asyncio.gather(
            *(
                asyncio.to_thread(
                    self.evaluator.run_one, task, {CONSUMER_ADAPTER: adapter}, "learn-sample"
                )
                for _ in range(self.samples)
            )
        )
        spans: list[Any] = []
        for number, trace in enumerate(traces):
            marks = {
                SAMPLE: number,
                SAMPLE_PASSED: trace.passed,
                SAMPLE_REWARD: float(trace.reward or 0.0),
            }
            for span in to_agl_spans(trace)[:-1]:  # its own reward span: the marks carry it
                spans.append(span.model_copy(update={"attributes": {**span.attributes, **marks}}))
        passed = sum(trace.passed for trace in traces)
        reward = {"reward": passed / len(traces), "passed_samples": float(passed)}
        spans.append(agl.emit_reward(reward, primary_key="reward", propagate=False))
        return spans


class ExpertIteration(agl.Algorithm):
    """The sampling and filtering half of a round, on agent-lightning's store: enqueue a rollout
    per training task with resource `consumer.adapter` (the adapter to sample with),
    wait for them, and turn the verified ones into SFT examples through the trainer's adapter
    (`TraceToMessages`), together with the `prior` samples of an interrupted round (each task's
    samples go to `on_samples` as soon as its rollout finishes, to be kept). `train` (when
    given) then trains on them in a worker thread."""

    def __init__(
        self,
        adapter: str,
        options: ExpertIterationOptions,
        train: Callable[[Selection], TrainingReport] | None = None,
        *,
        prior: Sequence[Sample] = (),
        on_samples: Callable[[list[Sample]], None] | None = None,
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.options = options
        self.train = train
        self.prior = prior
        self.on_samples = on_samples
        self.data: RoundData | None = None
        self.training: TrainingReport | None = None

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> None:
        if not train_dataset:
            raise ValueError("expert iteration needs training tasks")
        store = self.get_store()
        started = time.perf_counter()
        resources = await store.add_resources(
            {CONSUMER_ADAPTER: agl.PromptTemplate(template=self.adapter, engine="f-string")}
        )
        ids = []
        for item in train_dataset:
            rollout = await store.enqueue_rollout(
                input=item, mode="train", resources_id=resources.resources_id
            )
            ids.append(rollout.rollout_id)
        samples = list(self.prior) + await self._collect(store, ids)
        selection = select_examples(
            samples, held_out=self.options.held_out, per_task=self.options.per_task
        )
        self.data = RoundData(samples, selection, time.perf_counter() - started)
        log.info("expert iteration sampled: %s", self.data.summary())
        if self.train is not None and selection.examples:
            self.training = await asyncio.to_thread(self.train, selection)

    async def _collect(self, store: Any, ids: list[str]) -> list[Sample]:
        """Every rollout's samples as it finishes (each task's handed to `on_samples` at once),
        until all have finished or the timeout passed; with a progress bar."""
        from rich.progress import Progress

        deadline = time.monotonic() + self.options.rollout_timeout_s
        collected: dict[str, list[Sample]] = {}
        with Progress(transient=True) as bars:
            bar = bars.add_task("expert iteration: sampling", total=len(ids))
            while True:
                done = await store.wait_for_rollouts(rollout_ids=ids, timeout=0.0)
                for rollout in done:
                    if rollout.rollout_id not in collected:
                        collected[rollout.rollout_id] = await self._samples(store, rollout)
                        if self.on_samples is not None:
                            self.on_samples(collected[rollout.rollout_id])
                bars.update(bar, completed=len(collected))
                if len(collected) == len(ids) or time.monotonic() > deadline:
                    return [sample for samples in collected.values() for sample in samples]
                await asyncio.sleep(1.0)

    async def _samples(self, store: Any, rollout: Any) -> list[Sample]:
        """A finished rollout's samples: each one's last solution call as a conversation
        (through the trainer's adapter) and its verdict."""
        spans = list(await store.query_spans(rollout.rollout_id, "latest"))
        payload = rollout.input if isinstance(rollout.input, dict) else {}
        task = Task.model_validate(payload["task"]) if payload.get("task") else None
        numbers = sorted({s.attributes[SAMPLE] for s in spans if SAMPLE in s.attributes})
        samples = []
        for number in numbers:
            own = [s for s in spans if s.attributes.get(SAMPLE) == number]
            calls = [s for s in own if _is_solution_call(s.attributes)]
            conversations = self.get_adapter().adapt(calls[-1:]) if calls else []
            messages: list[Message] = (
                [dict(m) for m in conversations[-1]["messages"]] if conversations else []
            )
            samples.append(
                Sample(
                    rollout_id=f"{rollout.rollout_id}/{number}",
                    task=task,
                    messages=messages,
                    passed=bool(own[0].attributes.get(SAMPLE_PASSED)),
                    reward=float(own[0].attributes.get(SAMPLE_REWARD, 0.0)),
                )
            )
        return samples


def _is_solution_call(attributes: dict[str, Any]) -> bool:
    """An LLM call of the consumer answered with code (not CodeT's tests, not truncated)."""
    if attributes.get("aimesh.node") != "consumer":
        return False
    completion = str(attributes.get("gen_ai.completion.0.content", ""))
    return "def " in completion and "[truncated]" not in completion


def sample_round(
    sampler: MeshEvaluator,
    items: Sequence[TaskItem],
    adapter: str,
    options: ExpertIterationOptions,
    train: Callable[[Selection], TrainingReport] | None = None,
    *,
    prior: Sequence[Sample] = (),
    on_samples: Callable[[list[Sample]], None] | None = None,
) -> ExpertIteration:
    """Run one expert-iteration round on agent-lightning's `Trainer` (shared-memory strategy,
    one runner): `sampler` runs each graph run (its services decode at `options.temperature`),
    sampling with `adapter` ("" for the base model); `prior` and `on_samples` as
    `ExpertIteration` takes them."""
    algorithm = ExpertIteration(adapter, options, train, prior=prior, on_samples=on_samples)
    trace = tracer()
    trainer = agl.Trainer(
        algorithm=algorithm,
        store=agl.InMemoryLightningStore(),
        tracer=trace,
        adapter=agl.TraceToMessages(),
        runner=agl.LitAgentRunner(tracer=trace, poll_interval=0.05, interval_jitter=0.01),
        strategy=SharedMemoryExecutionStrategy(
            n_runners=1,
            main_thread="algorithm",
            poll_interval=0.05,
            graceful_delay=2.0,
        ),
        initial_resources={
            CONSUMER_ADAPTER: agl.PromptTemplate(template=adapter, engine="f-string")
        },
    )
    trainer.fit(SamplingAgent(sampler, options.samples), train_dataset=list(items))
    if algorithm.data is None:
        raise RuntimeError("expert iteration ended before its rollouts finished")
    return algorithm


def sampling_evaluator(evaluator: MeshEvaluator, temperature: float) -> MeshEvaluator:
    """An evaluator like `evaluator` (same services, store and registry) whose graph runs decode
    at `temperature`, each run afresh (no outcome cache): the sampler of a round."""
    hot = evaluator.services.settings.model_copy(update={"llm_temperature": temperature})
    return MeshEvaluator(
        dataclasses.replace(evaluator.services, settings=hot, llm=make_chat_model(hot)),
        db=evaluator.db,
        registry=evaluator.registry,
    )


def trainer_for(
    base: Callable[[], BaseModel], out_dir: Path, options: LoraOptions
) -> Callable[[Selection], TrainingReport]:
    """What `ExpertIteration` calls to train: LoRA SFT of the (lazily loaded) base into
    `out_dir`."""

    def train(selection: Selection) -> TrainingReport:
        return train_adapter(selection.examples, base(), out_dir, options)

    return train


class AdapterHost:
    """The embedded llama-server with a set of LoRA adapters loaded (llama-server loads adapters
    only at start: serving a new one restarts it) and the settings that reach it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: LocalModelServer | None = None

    def serve(self, adapters: Sequence[Path]) -> Settings:
        """(Re)start the server with `adapters`; settings for clients of it (the adapters' names
        are their file stems)."""
        self.close()
        local = self.settings.model_copy(update={"local_model_loras": list(adapters)})
        self.server = LocalModelServer.from_settings(local).start()
        return self.server.client_settings(local)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WeightsLearning:
    """What a learner needs to learn the consumer's adapter: the server hosting the adapters
    (restarted to load a new one), the folder they are kept in (`adapters_dir`: every adapter
    there is loaded), the served GGUF and the engine's converter, and the served weights for
    training (loaded once, on first use)."""

    def __init__(
        self, settings: Settings, host: AdapterHost, options: ExpertIterationOptions | None = None
    ) -> None:
        self.settings = settings
        self.host = host
        self.options = options or ExpertIterationOptions()
        self.folder = adapters_dir(settings)
        self._base: BaseModel | None = None

    def serve(self) -> Settings:
        """(Re)start the server with every adapter learned so far; settings that reach it."""
        return self.host.serve(learned_adapters(self.settings))

    def base(self) -> BaseModel:
        if self._base is None:
            self._base = load_base(ensure_model(self.settings.local_model, self.settings.cache_dir))
        return self._base

    def propose(
        self, evaluator: MeshEvaluator, items: Sequence[TaskItem], active: str
    ) -> tuple[str | None, dict[str, Any]]:
        """One expert-iteration round with `evaluator`'s services, sampling at the options'
        temperature with adapter `active`: the new adapter's name (its GGUF in the adapters
        folder), or None when no verified answer was found; and what the round sampled, kept
        and cost."""
        sampler = sampling_evaluator(evaluator, self.options.temperature)
        name = f"consumer-{uuid.uuid4().hex[:8]}"
        work = self.folder / "training" / name
        algorithm = sample_round(
            sampler, items, active, self.options, trainer_for(self.base, work, self.options.lora)
        )
        assert algorithm.data is not None
        detail: dict[str, Any] = {"sampling": algorithm.data.summary(), "training": None}
        if algorithm.training is None:
            return None, detail
        detail["training"] = algorithm.training.as_dict()
        model = ensure_model(self.settings.local_model, self.settings.cache_dir)
        converted = export_adapter(find_engine(self.settings.cache_dir), model, work, name)
        shutil.copyfile(converted, self.folder / converted.name)
        return name, detail

    def serving(self, services: MeshContext) -> MeshContext:
        """`services` pointed at the server restarted with every adapter learned so far."""
        served = self.serve()
        return dataclasses.replace(services, settings=served, llm=make_chat_model(served))
