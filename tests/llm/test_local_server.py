"""llama-server as the embedded engine: port handling, start-up failures, its command line, and
real chat completions (alone and several at once)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from app.cli.model import model_app
from foundation.settings import Settings
from llm.chat import request_extras
from llm.engine_build import Engine, EngineError
from llm.local_model import CATALOGUE, GGUF_MAGIC
from llm.local_server import LocalModelServer, ServerError

ALIAS = CATALOGUE["0.5b"].alias


def test_port_in_use_is_a_clear_error(busy_port: int, tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path, port=busy_port)
    with pytest.raises(ServerError, match=f"port {busy_port} on 127.0.0.1 is not available"):
        server.start()


def test_missing_engine_names_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"llama-server is not built .*run `make setup`"):
        LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path).start()


def test_missing_lora_file_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path, loras=[tmp_path / "x.gguf"])
    with pytest.raises(ServerError, match=r"no such LoRA adapter: .*x\.gguf"):
        server.start()


def test_command_line_slots_context_template_and_adapters(tmp_path: Path) -> None:
    loras = [tmp_path / "a.gguf", tmp_path / "b.gguf"]
    server = LocalModelServer(
        tmp_path / "m.gguf", cache_dir=tmp_path, port=8123, n_ctx=2048, parallel=3, loras=loras
    )
    server._engine = Engine(tmp_path)
    cmd = server._command()
    assert cmd[:2] == ["-x", str(tmp_path / "bin" / "llama-server")]
    joined = " ".join(cmd)
    assert "--parallel 3" in joined and "-c 6144" in joined  # every slot holds n_ctx
    assert "--cont-batching" in cmd and "--jinja" in cmd  # the model's own chat template
    assert f"--lora {loras[0]} --lora {loras[1]} --lora-init-without-apply" in joined


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


@pytest.mark.timeout(60)
def test_server_that_dies_reports_its_log(engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(GGUF_MAGIC + b"\xff" * 64)
    server = LocalModelServer(broken, cache_dir=engine.root.parent.parent)
    with pytest.raises(ServerError, match=r"exited with code \d+ while starting; .*ends with:\n"):
        server.start()
    assert server.pid is None


def _server(engine: Engine, model: Path, **options: object) -> LocalModelServer:
    return LocalModelServer(model, cache_dir=engine.root.parent.parent, alias=ALIAS, **options)  # type: ignore[arg-type]


def _greedy(server: LocalModelServer, ask: str, extra: dict[str, object]) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=120)
    reply = client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": ask}],
        temperature=0,
        extra_body={"max_tokens": 48, **extra},
    )
    return reply.choices[0].message.content or ""


@pytest.mark.real_llm
@pytest.mark.timeout(120)
def test_real_server_chat_completion(engine: Engine, real_model: Path) -> None:
    with _server(engine, real_model) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=server.base_url, api_key="local", timeout=60)
        assert [m.id for m in client.models.list()] == [ALIAS]
        started = time.monotonic()
        reply = client.chat.completions.create(
            model=ALIAS,
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


@pytest.mark.real_llm
@pytest.mark.timeout(240)
def test_greedy_alone_is_reproducible_and_slots_answer_together(
    engine: Engine, real_model: Path
) -> None:
    """A greedy request alone gets the same answer every time. Decoded together in four slots,
    answers may differ from those alone: a batched matrix product sums in another order (on
    this CPU 1 of 4 answers differed in its wording); benchmarks/engine.py measures how often."""
    asks = [f"Write a Python function that returns the {w} of a list." for w in
            ("sum", "maximum", "length", "reverse")]  # fmt: skip
    uncached = {"cache_prompt": False}
    with _server(engine, real_model, parallel=4) as server:
        alone = [_greedy(server, ask, uncached) for ask in asks]
        assert [_greedy(server, ask, uncached) for ask in asks] == alone
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda a: _greedy(server, a, uncached), asks))
    assert all("def " in answer for answer in together)


@pytest.mark.real_llm
@pytest.mark.timeout(180)
def test_the_repeat_penalty_sent_is_applied(engine: Engine, real_model: Path) -> None:
    """llama-server applies no repetition penalty unless asked (1.0), so the setting's 1.0 is
    its default; a penalty that is sent cuts short what should repeat."""
    ask = "Write a Python list literal holding the number 7 twenty times. Only the list."
    with _server(engine, real_model) as server:
        default = _greedy(server, ask, {"max_tokens": 64})
        sent = _greedy(
            server,
            ask,
            request_extras(Settings(llm_repeat_penalty=1.0, llm_max_tokens=64), "local"),
        )
        penalised = _greedy(server, ask, {"max_tokens": 64, "repeat_penalty": 1.5})
    assert sent == default
    assert penalised.count("7") < default.count("7")
