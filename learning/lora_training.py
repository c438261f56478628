"""LoRA supervised fine-tuning of exactly the weights the model server serves: transformers
reads the GGUF file (de-quantised to float32), peft adds the adapter, transformers' `Trainer`
trains it on the answer tokens only, checkpointing every few steps so an interrupted run resumes
by step; a GPU is used when one is present. The adapter is then converted to a GGUF LoRA for
llama-server (`llm.lora`).

torch, transformers and peft (the `train` extra) are imported only when training runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from learning.sft_data import Example
from llm.engine_build import Engine
from llm.lora import convert_adapter, save_base_config

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
REPORT_FILE = "training.json"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a transformer block (Qwen2 / Llama naming)."""


@dataclass(frozen=True)
class LoraOptions:
    """What is trained and how (chosen by measurement on 2 CPU cores: see docs/learning.md)."""

    rank: int = 16
    alpha: int = 32
    top_layers: int = 8
    """How many of the model's top layers get adapters (0: all); back-propagation stops at the
    lowest one, so fewer layers is proportionally faster."""
    learning_rate: float = 2e-4
    epochs: float = 2.0
    max_tokens: int = 512
    """Longer conversations are dropped, not cut (a cut answer teaches a broken solution)."""
    accumulation: int = 4
    save_every: int = 5
    seed: int = 0


@dataclass
class TrainingReport:
    """What one training run did and cost."""

    examples: int
    dropped_too_long: int
    steps: int
    tokens: int
    seconds: float
    first_loss: float | None
    last_loss: float | None
    device: str
    resumed_from_step: int
    options: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingError(RuntimeError):
    """The adapter cannot be trained (no usable example, a base that does not load)."""


@dataclass
class BaseModel:
    """The served model's weights as transformers holds them, with its tokenizer."""

    path: Path
    model: Any
    tokenizer: Any


def load_base(model: Path) -> BaseModel:
    """The GGUF `model` de-quantised into a transformers model (float32) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model.parent, gguf_file=model.name)
        weights = AutoModelForCausalLM.from_pretrained(
            model.parent, gguf_file=model.name, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load {model} for training: {exc}") from None
    # the weights are de-quantised on load, but the model keeps a GGUF quantizer, which the
    # Trainer refuses to train on
    setattr(weights, "is_quantized", False)  # noqa: B010  (typed as a module attribute)
    setattr(weights, "hf_quantizer", None)  # noqa: B010
    log.info("loaded %s for training in %.0f s", model.name, time.perf_counter() - started)
    return BaseModel(model, weights, tokenizer)


def tokenize(
    examples: Sequence[Example], tokenizer: Any, max_tokens: int
) -> tuple[list[dict[str, list[int]]], int]:
    """Token ids and labels (the prompt masked with -100: only the answer is learned) of each
    example in the model's own chat template; and how many were longer than `max_tokens`."""
    rows: list[dict[str, list[int]]] = []
    dropped = 0
    for example in examples:
        prompt_text = tokenizer.apply_chat_template(
            example.messages[:-1], tokenize=False, add_generation_prompt=True
        )
        full_text = tokenizer.apply_chat_template(example.messages, tokenize=False)
        if not full_text.startswith(prompt_text):
            raise TrainingError("the chat template renders the prompt differently with its answer")
        prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        answer = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        ids = prompt + answer
        if len(ids) > max_tokens:
            dropped += 1
            continue
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "labels": [-100] * len(prompt) + answer,
            }
        )
    return rows, dropped


def train_adapter(
    examples: Sequence[Example],
    base: BaseModel,
    out_dir: Path,
    options: LoraOptions | None = None,
) -> TrainingReport:
    """Train a LoRA adapter on `examples` into `out_dir/adapter` (PEFT format), resuming from
    the last checkpoint in `out_dir/checkpoints`; a finished run's report is returned as is."""
    knobs = options or LoraOptions()
    done = out_dir / REPORT_FILE
    if done.is_file() and (out_dir / ADAPTER_DIR / "adapter_config.json").is_file():
        return TrainingReport(**json.loads(done.read_text()))
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    rows, dropped = tokenize(examples, base.tokenizer, knobs.max_tokens)
    if not rows:
        raise TrainingError(f"no example fits in {knobs.max_tokens} tokens (of {len(examples)})")
    layers = int(base.model.config.num_hidden_layers)
    top = knobs.top_layers or layers
    config = LoraConfig(
        r=knobs.rank,
        lora_alpha=knobs.alpha,
        target_modules=list(TARGETS),
        layers_to_transform=list(range(max(0, layers - top), layers)),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base.model, config)
    checkpoints = out_dir / CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = get_last_checkpoint(str(checkpoints))
    resumed = int(last.rsplit("-", 1)[-1]) if last else 0
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=knobs.accumulation,
        num_train_epochs=knobs.epochs,
        learning_rate=knobs.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_steps=knobs.save_every,
        save_total_limit=1,
        seed=knobs.seed,
        report_to=[],
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,  # a sized, indexable list of features
        data_collator=DataCollatorForSeq2Seq(base.tokenizer, padding=True),
    )
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=last)
        model.save_pretrained(str(out_dir / ADAPTER_DIR))
    finally:
        base.model = model.unload()  # the base weights without the adapter, for the next round
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    report = TrainingReport(
        examples=len(rows),
        dropped_too_long=dropped,
        steps=int(trainer.state.global_step),
        tokens=sum(len(r["input_ids"]) for r in rows),
        seconds=round(time.perf_counter() - started, 1),
        first_loss=round(losses[0], 4) if losses else None,
        last_loss=round(losses[-1], 4) if losses else None,
        device="cuda" if cuda else "cpu",
        resumed_from_step=resumed,
        options=asdict(knobs),
    )
    done.write_text(json.dumps(report.as_dict(), indent=1))
    return report


def export_adapter(engine: Engine, base: Path, out_dir: Path, name: str) -> Path:
    """The adapter trained in `out_dir` converted to `out_dir/<name>.gguf` for llama-server,
    against the config of the GGUF `base` it was trained on."""
    target = out_dir / f"{name}.gguf"
    if target.is_file():
        return target
    base_dir = save_base_config(base, out_dir / "base")
    return convert_adapter(engine, out_dir / ADAPTER_DIR, base_dir, target)
