"""LoRA adapters per request on llama-server: a PEFT adapter made here (random, non-zero),
converted by llama.cpp's converter, changes the answer when a request names it; a request that
names none gets the base model's answer."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from foundation.settings import Settings
from llm.chat import lora_scales, request_extras
from llm.engine_build import Engine
from llm.local_model import CATALOGUE
from llm.local_server import LocalModelServer
from llm.lora import AdapterError, convert_adapter, save_base_config

ALIAS = CATALOGUE["0.5b"].alias
ASK = "Write a Python function is_even(n) that returns True when n is even."


def random_peft_adapter(base_dir: Path, out_dir: Path, *, rank: int = 8, std: float = 0.05) -> Path:
    """A real PEFT LoRA adapter (q_proj, v_proj) for the base config, with random weights: the
    base is built on the meta device (no weights), the adapter's tensors drawn at random."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_dir)
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, lora)
    generator = torch.Generator().manual_seed(0)
    state = {
        name: torch.randn(tensor.shape, generator=generator) * std
        for name, tensor in get_peft_model_state_dict(model).items()
    }
    model.save_pretrained(out_dir, state_dict=state)
    return out_dir


@pytest.fixture(scope="module")
def random_lora(engine: Engine, real_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lora")
    base_dir = save_base_config(real_model, tmp / "base")
    adapter = random_peft_adapter(base_dir, tmp / "peft")
    return convert_adapter(engine, adapter, base_dir, tmp / "random.gguf")


def _greedy(server: LocalModelServer, extra: dict[str, object]) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=120)
    reply = client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": ASK}],
        temperature=0,
        extra_body={**extra, "max_tokens": 40},
    )
    return reply.choices[0].message.content or ""


def test_lora_field_lists_every_adapter() -> None:
    settings = Settings(local_model_loras=[Path("/a/round1.gguf"), Path("/a/round2.gguf")])
    assert lora_scales(settings, None) == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    assert lora_scales(settings, "round2", 0.5) == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 0.5},
    ]
    assert "lora" not in request_extras(Settings(), "local")  # no adapter loaded: no field
    with pytest.raises(ValueError, match="unknown adapter 'round3'"):
        lora_scales(settings, "round3")


def test_an_adapter_that_is_not_loaded_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="not among local_model_loras"):
        Settings(llm_adapter="round1")


def test_a_broken_adapter_is_one_line(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "peft").mkdir()
    (tmp_path / "base").mkdir()
    with pytest.raises(AdapterError, match="cannot convert"):
        convert_adapter(engine, tmp_path / "peft", tmp_path / "base", tmp_path / "x.gguf")


@pytest.mark.real_llm
@pytest.mark.timeout(600)
def test_an_adapter_applies_per_request(
    engine: Engine, real_model: Path, random_lora: Path
) -> None:
    cache = engine.root.parent.parent
    settings = Settings(local_model_loras=[random_lora])
    with LocalModelServer(real_model, cache_dir=cache, alias=ALIAS) as plain:
        base = _greedy(plain, {})
    with LocalModelServer(real_model, cache_dir=cache, alias=ALIAS, loras=[random_lora]) as server:
        listed = httpx.get(f"{server.root_url}/lora-adapters", timeout=10).json()
        assert [Path(a["path"]).name for a in listed] == ["random.gguf"]
        unnamed = _greedy(server, request_extras(settings, "local"))
        named = settings.model_copy(update={"llm_adapter": "random"})
        adapted = _greedy(server, request_extras(named, "local"))
        again = _greedy(server, request_extras(settings, "local"))  # back to the base (rollback)
    assert unnamed == base
    assert adapted != base
    assert again == base
