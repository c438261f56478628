"""What the chat client sends beyond the OpenAI fields, and which model it names."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from foundation.settings import Settings
from llm import chat, local_server
from llm.chat import model_label, request_extras
from llm.lora import adapters_dir, learned_adapters


def test_repeat_penalty_goes_to_self_hosted_models_only() -> None:
    local = request_extras(Settings(llm_repeat_penalty=1.0), "local")
    assert local == {"max_tokens": Settings().llm_max_tokens, "repeat_penalty": 1.0}
    hosted = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_repeat_penalty=1.05)
    assert request_extras(hosted, "openai")["repeat_penalty"] == 1.05
    # OpenAI's own API refuses fields it does not know
    assert "repeat_penalty" not in request_extras(Settings(llm_repeat_penalty=1.0), "openai")
    assert "repeat_penalty" not in request_extras(Settings(llm_repeat_penalty=None), "local")


def test_a_request_may_name_its_adapter_over_the_settings_one(tmp_path: Path) -> None:
    loras = [tmp_path / "first.gguf", tmp_path / "second.gguf"]
    settings = Settings(local_model_loras=loras, llm_adapter="first")
    assert request_extras(settings, "local")["lora"] == [
        {"id": 0, "scale": 1.0},
        {"id": 1, "scale": 0.0},
    ]
    assert request_extras(settings, "local", "second")["lora"] == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 1.0},
    ]
    with pytest.raises(ValueError, match="unknown adapter 'third'"):
        request_extras(settings, "local", "third")


def test_the_adapters_learned_in_the_data_dir_are_served_after_the_listed_ones(
    tmp_path: Path,
) -> None:
    listed = tmp_path / "listed.gguf"
    folder = adapters_dir(Settings(data_dir=tmp_path / "data"))
    assert learned_adapters(Settings(data_dir=tmp_path / "data")) == []
    folder.mkdir(parents=True)
    for name in ("consumer-b", "consumer-a"):
        (folder / f"{name}.gguf").write_bytes(b"GGUF")
    settings = Settings(data_dir=tmp_path / "data", local_model_loras=[listed])
    assert [p.stem for p in learned_adapters(settings)] == ["listed", "consumer-a", "consumer-b"]


def test_repeat_penalty_none_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMESH_LLM_REPEAT_PENALTY", "none")
    assert Settings().llm_repeat_penalty is None
    monkeypatch.setenv("AIMESH_LLM_REPEAT_PENALTY", "1.1")
    assert Settings().llm_repeat_penalty == 1.1


def test_the_model_named_is_the_one_that_answers(tmp_path: Path) -> None:
    """The local model's alias follows `local_model` (a 1.5B run was once reported under the
    0.5B's name, `llm_model`'s default); endpoints keep `llm_model`."""
    assert model_label(Settings(llm="local", local_model="1.5b")) == "qwen2.5-coder-1.5b-instruct"
    assert model_label(Settings(llm="local")) == "qwen2.5-coder-0.5b-instruct"
    gguf = tmp_path / "my-model.Q8_0.gguf"
    assert model_label(Settings(llm="local", local_model=str(gguf))) == "my-model.Q8_0"
    endpoint = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="served-name")
    assert model_label(endpoint) == "served-name"
    assert model_label(Settings(llm="scripted")) == "scripted double"


class CountingServer:
    """Test double for LocalModelServer: counts starts, serves nothing."""

    started: ClassVar[list[str]] = []

    def __init__(self, model: str) -> None:
        self.model = model

    @classmethod
    def from_settings(cls, settings: Settings) -> CountingServer:
        return cls(settings.local_model)

    def start(self) -> None:
        CountingServer.started.append(self.model)

    def stop(self) -> None:
        pass

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{len(CountingServer.started)}/v1"


def test_each_local_model_gets_its_own_server_once_per_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(local_server, "LocalModelServer", CountingServer)
    monkeypatch.setattr(chat, "_local_server_urls", {})
    monkeypatch.setattr(CountingServer, "started", [])
    small, large = (Settings(local_model=m, cache_dir=tmp_path) for m in ("0.5b", "1.5b"))
    first = chat._local_model_url(small)
    assert chat._local_model_url(small) == first  # reused
    assert chat._local_model_url(large) != first  # not the 0.5B's server under the 1.5B's name
    assert CountingServer.started == ["0.5b", "1.5b"]
