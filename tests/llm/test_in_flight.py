"""A process keeps at most `llm_max_in_flight` requests open to the model (the embedded server's
slots by default), and a request waiting its turn does not run its timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.messages import HumanMessage

from foundation.settings import Settings
from llm.chat import ask, make_chat_model, max_in_flight
from llm.local_server import LocalModelServer


class SlowEndpoint(BaseHTTPRequestHandler):
    """TEST DOUBLE of an OpenAI-compatible endpoint: answers every chat request after `delay_s`
    and counts the requests it holds at once."""

    delay_s: ClassVar[float] = 0.4
    lock: ClassVar[threading.Lock] = threading.Lock()
    open_now: ClassVar[int] = 0
    most_open: ClassVar[int] = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        with cls.lock:
            cls.open_now += 1
            cls.most_open = max(cls.most_open, cls.open_now)
        time.sleep(cls.delay_s)
        with cls.lock:
            cls.open_now -= 1
        body = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "double",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    SlowEndpoint.open_now = SlowEndpoint.most_open = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_requests_beyond_the_limit_wait_their_turn_without_timing_out(endpoint: str) -> None:
    # 16 requests of 0.4 s through 2 places: the last are sent after 2.8 s, past the 1 s timeout
    # (and past its one retry)
    settings = Settings(llm="openai", llm_base_url=endpoint, llm_timeout_s=1.0, llm_max_in_flight=2)
    model = make_chat_model(settings)
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: ask(model, [HumanMessage("hi")]), range(16)))
    assert [reply.text for reply in replies] == ["ok"] * 16
    assert SlowEndpoint.most_open == 2


def test_an_endpoint_without_a_limit_gets_every_request_at_once(endpoint: str) -> None:
    model = make_chat_model(Settings(llm="openai", llm_base_url=endpoint))
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: ask(model, [HumanMessage("hi")]), range(6)))
    assert SlowEndpoint.most_open == 6


def test_the_embedded_model_is_limited_to_its_slots() -> None:
    assert max_in_flight(Settings(local_model_parallel=3), "local") == 3
    assert max_in_flight(Settings(local_model_parallel=3, llm_max_in_flight=5), "local") == 5
    assert max_in_flight(Settings(), "openai") is None


def test_clients_of_a_started_server_keep_to_its_slots(tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "m.gguf", cache_dir=tmp_path, port=8123, parallel=3)
    clients = server.client_settings(Settings(llm="local"))
    assert (clients.llm, clients.llm_base_url) == ("openai", "http://127.0.0.1:8123/v1")
    assert (clients.llm_model, clients.llm_max_in_flight) == ("m", 3)
    assert max_in_flight(clients, "openai") == 3
    assert server.client_settings(Settings(llm_max_in_flight=1)).llm_max_in_flight == 1
