"""The llama.cpp server: port handling, start-up failures, and one real chat completion."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from app.cli.model import model_app
from foundation.settings import Settings
from llm import local_server
from llm.chat import request_extras
from llm.local_model import CATALOGUE, GGUF_MAGIC
from llm.local_server import LocalModelServer, ServerError


def test_port_in_use_is_a_clear_error(busy_port: int, tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path, port=busy_port)
    with pytest.raises(ServerError, match=f"port {busy_port} on 127.0.0.1 is not available"):
        server.start()


def test_missing_llama_cpp_says_run_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_server, "_SERVER_MODULES", ("aimesh_no_such_module",))
    with pytest.raises(ServerError, match=r"missing aimesh_no_such_module\): run scripts/setup.sh"):
        LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path).start()


def test_cli_fetch_path_and_errors(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(GGUF_MAGIC + b"\0" * 4)
    result = CliRunner().invoke(model_app, ["fetch", "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert str(model) in result.output and "8 bytes" in result.output
    result = CliRunner().invoke(model_app, ["fetch", "--model", str(tmp_path / "nope.gguf")])
    assert result.exit_code == 2 and "no such model" in result.output


def test_cli_serve_port_in_use(busy_port: int, tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(GGUF_MAGIC)
    result = CliRunner().invoke(
        model_app, ["serve", "--model", str(model), "--port", str(busy_port)]
    )
    assert result.exit_code == 2 and "is not available" in result.output


needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed: run scripts/setup.sh",
)


@needs_llama
@pytest.mark.timeout(60)
def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(GGUF_MAGIC + b"\xff" * 64)
    server = LocalModelServer(broken, cache_dir=tmp_path)
    with pytest.raises(ServerError, match=r"exited with code \d+ while starting; .*ends with:\n"):
        server.start()
    assert server.pid is None


@needs_llama
@pytest.mark.real_llm
@pytest.mark.timeout(120)
def test_real_server_chat_completion(real_model: Path, tmp_path: Path) -> None:
    alias = CATALOGUE["0.5b"].alias
    with LocalModelServer(real_model, cache_dir=tmp_path, alias=alias) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=60)
        assert [m.id for m in client.models.list()] == [alias]
        started = time.monotonic()
        reply = client.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Write a Python function add(a, b)."}],
            max_tokens=12,
            temperature=0,
        )
        assert time.monotonic() - started < 30
        assert reply.choices[0].message.content
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 12
        pid = server.pid
        assert pid is not None
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@needs_llama
@pytest.mark.real_llm
@pytest.mark.timeout(180)
def test_real_server_penalises_repeats_unless_told_not_to(real_model: Path, tmp_path: Path) -> None:
    """The embedded server applies a repetition penalty of 1.1 to a request that names none, and
    it cuts short what should repeat; `llm_repeat_penalty` (1.0) is sent to lift it."""
    alias = CATALOGUE["0.5b"].alias
    ask = "Write a Python list literal holding the number 7 twenty times. Only the list."
    with LocalModelServer(real_model, cache_dir=tmp_path, alias=alias) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=60)

        def greedy(extra: dict[str, object]) -> str:
            reply = client.chat.completions.create(
                model=alias,
                messages=[{"role": "user", "content": ask}],
                max_tokens=64,
                temperature=0,
                extra_body=extra,
            )
            return reply.choices[0].message.content or ""

        greedy({})  # warm the prompt cache: the calls below all start from it
        default, server_default = greedy({}), greedy({"repeat_penalty": 1.1})
        sent = greedy(request_extras(Settings(llm_repeat_penalty=1.0), "local"))
    assert default == server_default
    assert sent.count("7") > default.count("7")
