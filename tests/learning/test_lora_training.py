"""LoRA training against the real thing: the served GGUF's own weights, trained with the Trainer
(interrupted and resumed by step), converted to a GGUF LoRA and served per request by the real
llama-server, where it changes the answer; a request naming no adapter keeps the base's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from foundation.settings import Settings
from learning.lora_training import (
    ADAPTER_DIR,
    REPORT_FILE,
    BaseModel,
    LoraOptions,
    TrainingError,
    export_adapter,
    load_base,
    tokenize,
    train_adapter,
)
from learning.sft_data import Example
from llm.chat import lora_scales
from llm.engine_build import Engine
from llm.local_model import CATALOGUE, ensure_model
from llm.local_server import LocalModelServer

SECRET = "ZEBRAFISH-42"
ASK = "What is the secret word?"
OPTIONS = LoraOptions(
    rank=8, alpha=16, top_layers=4, learning_rate=2e-3, epochs=4, accumulation=1, save_every=2
)


class Interrupted(Exception):
    """Raised by the test in the middle of training, as a kill would stop it."""


def _examples() -> list[Example]:
    def conversation(ask: str) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": ask},
            {"role": "assistant", "content": SECRET},
        ]

    return [
        Example("secret-1", conversation(ASK), 1.0),
        Example("secret-2", conversation("Tell me the secret word."), 1.0),
    ]


@pytest.fixture(scope="module")
def real_model() -> Path:
    return ensure_model("0.5b", Settings().cache_dir)


@pytest.fixture(scope="module")
def base(real_model: Path) -> BaseModel:
    """The served GGUF de-quantised for training (about half a minute: loaded once)."""
    return load_base(real_model)


def test_only_the_answer_is_learned_and_long_examples_are_dropped(base: BaseModel) -> None:
    tokenizer = base.tokenizer
    rows, dropped = tokenize(_examples(), tokenizer, max_tokens=512)
    assert dropped == 0
    for row in rows:
        answer = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label >= 0]
        assert SECRET in tokenizer.decode(answer)
        assert row["labels"][0] == -100
    rows, dropped = tokenize(_examples(), tokenizer, max_tokens=10)
    assert (rows, dropped) == ([], 2)


def test_an_adapter_trained_on_the_served_weights_resumes_and_changes_the_answer(
    engine: Engine,
    real_model: Path,
    base: BaseModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import Trainer

    step = Trainer.training_step

    def interrupted_step(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        if self.state.global_step == 4:
            raise Interrupted
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", interrupted_step)
    with pytest.raises(Interrupted):
        train_adapter(_examples(), base, tmp_path, OPTIONS)
    assert not (tmp_path / REPORT_FILE).exists()
    monkeypatch.setattr(Trainer, "training_step", step)

    report = train_adapter(_examples(), base, tmp_path, OPTIONS)
    assert report.resumed_from_step == 4
    assert report.steps == 8  # 2 examples x 4 epochs, one at a time
    assert report.examples == 2 and report.device in ("cpu", "cuda")
    assert report.first_loss is not None and report.last_loss is not None
    assert report.last_loss < report.first_loss
    assert (tmp_path / ADAPTER_DIR / "adapter_config.json").is_file()
    assert train_adapter(_examples(), base, tmp_path, OPTIONS) == report  # finished: kept

    adapter = export_adapter(engine, real_model, tmp_path, "secret")
    settings = Settings(local_model_loras=[adapter])
    with LocalModelServer(
        real_model,
        cache_dir=settings.cache_dir,
        alias=CATALOGUE["0.5b"].alias,
        parallel=1,
        loras=[adapter],
    ) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=120)

        def answer(name: str | None) -> str:
            reply = client.chat.completions.create(
                model=server.alias,
                messages=[m for m in _examples()[0].messages[:-1]],  # type: ignore[misc]
                temperature=0,
                extra_body={"lora": lora_scales(settings, name), "max_tokens": 12},
            )
            return reply.choices[0].message.content or ""

        base_answer = answer(None)
        assert SECRET not in base_answer
        assert SECRET in answer("secret")
        assert answer(None) == base_answer  # rollback: no adapter named, the base answers


def test_nothing_to_train_on_is_one_clear_error(base: BaseModel, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no example fits"):
        train_adapter(_examples(), base, tmp_path, LoraOptions(max_tokens=8))
