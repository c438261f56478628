"""Chat models for the agents: any OpenAI-compatible endpoint, the embedded local model, or the
scripted test double; one call helper that counts tokens and turns outages into one clear line."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from foundation.errors import InfrastructureError
from foundation.settings import Settings
from llm.local_model import model_alias


class LLMUnavailableError(InfrastructureError):
    """The LLM endpoint cannot be reached or refused the request."""


@dataclass(frozen=True)
class LLMReply:
    """A model's text answer and the tokens it cost."""

    text: str
    tokens: int


_local_server_lock = threading.Lock()
_local_server_urls: dict[tuple[object, ...], str] = {}
"""Base URL of each local model server started in this process, by what it was started with."""


def _local_model_url(settings: Settings) -> str:
    """Start the embedded llama-server for the settings' model once per process and return its
    base URL (another model, or other adapters or slots, get a server of their own)."""
    key = (
        settings.local_model,
        str(settings.cache_dir),
        tuple(map(str, settings.local_model_loras)),
        settings.local_model_parallel,
        settings.local_model_ctx,
    )
    with _local_server_lock:
        if key not in _local_server_urls:
            from llm.local_server import LocalModelServer

            server = LocalModelServer.from_settings(settings)
            server.start()
            atexit.register(server.stop)
            _local_server_urls[key] = server.base_url
        return _local_server_urls[key]


def resolve_provider(settings: Settings) -> str:
    """Which provider `auto` means here: openai when an endpoint or key is configured, else local."""
    if settings.llm != "auto":
        return settings.llm
    if settings.llm_base_url or os.environ.get("OPENAI_API_KEY"):
        return "openai"
    return "local"


def model_label(settings: Settings) -> str:
    """The model that answers, for reports and requests: the local model's alias (`local_model`
    picks it, not `llm_model`), "scripted double" for the offline test double, else `llm_model`."""
    provider = resolve_provider(settings)
    if provider == "local":
        return model_alias(settings.local_model)
    return "scripted double" if provider == "scripted" else settings.llm_model


OPENAI_BASE_URL = "https://api.openai.com/v1"


def check_llm(settings: Settings, *, timeout_s: float = 10.0) -> None:
    """Fail fast, with a hint, when the model the settings name cannot answer: an endpoint must
    answer HTTP (any status) within `timeout_s`; the local model's server is started (once per
    process, reused by `make_chat_model`)."""
    provider = resolve_provider(settings)
    if provider == "local":
        _local_model_url(settings)
    if provider != "openai":
        return
    url = (settings.llm_base_url or OPENAI_BASE_URL).rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: a refusal (401, 404) is the request's business, not reachability
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise LLMUnavailableError(
            f"cannot reach the LLM at {url}: {reason}; start one (`aimesh model serve` prints its "
            "AIMESH_LLM_BASE_URL), correct AIMESH_LLM_BASE_URL, or use --llm local or --llm scripted"
        ) from None


def make_chat_model(settings: Settings) -> BaseChatModel:
    """The chat model the settings ask for (starting the local model server when needed)."""
    provider = resolve_provider(settings)
    if provider == "scripted":
        from llm.scripted import ScriptedChatModel

        return ScriptedChatModel(delay_s=settings.scripted_delay_s)
    # langchain-openai (and openai) take about a second to import: only for a real endpoint.
    from langchain_openai import ChatOpenAI

    if provider == "local":
        base_url: str | None = _local_model_url(settings)
        api_key = "local"
    else:
        base_url = settings.llm_base_url
        secret = settings.llm_api_key
        api_key = secret.get_secret_value() if secret else os.environ.get("OPENAI_API_KEY", "none")
    in_flight = max_in_flight(settings, provider)
    return ChatOpenAI(
        model=model_label(settings),
        base_url=base_url,
        api_key=api_key,
        temperature=settings.llm_temperature,
        # the wait for an in-flight place (the pool) has no limit: the call's time starts once sent
        timeout=httpx.Timeout(settings.llm_timeout_s, pool=None),
        max_retries=1,
        extra_body=request_extras(settings, provider),
        http_client=None if in_flight is None else _limited_client(base_url, in_flight),
    )


def max_in_flight(settings: Settings, provider: str) -> int | None:
    """How many requests this process keeps open to the model at once: `llm_max_in_flight`, else
    the embedded server's slots; none (no limit) for an endpoint not given one."""
    if settings.llm_max_in_flight is not None:
        return settings.llm_max_in_flight
    return settings.local_model_parallel if provider == "local" else None


_clients_lock = threading.Lock()
_clients: dict[tuple[str | None, int], httpx.Client] = {}
"""One HTTP client per endpoint and limit, shared by every chat model of the process."""


def _limited_client(base_url: str | None, in_flight: int) -> httpx.Client:
    """The process's HTTP client for `base_url` with at most `in_flight` connections open: with
    HTTP/1.1 that is requests in flight, and the others wait for a connection, not on a server
    queue where their timeout would run (a server with 4 slots answers only 4 at once anyway)."""
    key = (base_url, in_flight)
    with _clients_lock:
        if key not in _clients:
            limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
            _clients[key] = httpx.Client(limits=limits)
        return _clients[key]


def request_extras(settings: Settings, provider: str, adapter: str | None = None) -> dict[str, Any]:
    """Request fields beyond the OpenAI client's own: `max_tokens` (llama.cpp's servers ignore
    max_completion_tokens) and, for the embedded model or a self-hosted endpoint, the repetition
    penalty and the LoRA adapters (never sent to OpenAI's own API, which refuses unknown fields):
    `adapter` when given, else `settings.llm_adapter`."""
    extras: dict[str, Any] = {"max_tokens": settings.llm_max_tokens}
    self_hosted = provider == "local" or settings.llm_base_url is not None
    if settings.llm_repeat_penalty is not None and self_hosted:
        extras["repeat_penalty"] = settings.llm_repeat_penalty
    if settings.local_model_loras and self_hosted:
        chosen = adapter or settings.llm_adapter
        extras["lora"] = lora_scales(settings, chosen, settings.llm_adapter_scale)
    return extras


def lora_scales(
    settings: Settings, adapter: str | None, scale: float = 1.0
) -> list[dict[str, Any]]:
    """llama-server's `lora` field applying `adapter` (a name from `settings.adapter_names`) at
    `scale`, or none. Every loaded adapter is listed: one left out keeps its global scale (and in
    build 11434 an empty list still applied them), so the others are sent at 0."""
    names = settings.adapter_names
    if adapter is not None and adapter not in names:
        raise ValueError(f"unknown adapter {adapter!r}; loaded: {', '.join(names) or 'none'}")
    return [{"id": i, "scale": scale if name == adapter else 0.0} for i, name in enumerate(names)]


def ask(model: Runnable[Any, Any], messages: list[BaseMessage], **kwargs: Any) -> LLMReply:
    """Invoke the model; return text and token count, or raise LLMUnavailableError (one line)."""
    try:
        reply = model.invoke(messages, **kwargs)
    except Exception as exc:
        # openai is imported only with a real endpoint; without it, no openai error can occur.
        openai = sys.modules.get("openai")
        if openai is not None and isinstance(exc, openai.APIConnectionError):
            url = getattr(model, "openai_api_base", None) or "the configured endpoint"
            raise LLMUnavailableError(f"cannot reach the LLM at {url}: {exc}") from exc
        if openai is not None and isinstance(exc, openai.APIStatusError):
            raise LLMUnavailableError(
                f"the LLM refused the request: {exc.status_code} {exc.message}"
            ) from exc
        raise
    usage = getattr(reply, "usage_metadata", None) or {}
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    return LLMReply(text=text, tokens=int(usage.get("total_tokens", 0)))
