"""What the chat client sends beyond the OpenAI fields."""

from __future__ import annotations

import pytest

from foundation.settings import Settings
from llm.chat import request_extras


def test_repeat_penalty_goes_to_self_hosted_models_only() -> None:
    local = request_extras(Settings(llm_repeat_penalty=1.0), "local")
    assert local == {"max_tokens": Settings().llm_max_tokens, "repeat_penalty": 1.0}
    hosted = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_repeat_penalty=1.05)
    assert request_extras(hosted, "openai")["repeat_penalty"] == 1.05
    # OpenAI's own API refuses fields it does not know
    assert "repeat_penalty" not in request_extras(Settings(llm_repeat_penalty=1.0), "openai")
    assert "repeat_penalty" not in request_extras(Settings(llm_repeat_penalty=None), "local")


def test_repeat_penalty_none_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMESH_LLM_REPEAT_PENALTY", "none")
    assert Settings().llm_repeat_penalty is None
    monkeypatch.setenv("AIMESH_LLM_REPEAT_PENALTY", "1.1")
    assert Settings().llm_repeat_penalty == 1.1
