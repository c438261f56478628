from collections.abc import Iterator

import pytest
from langsmith.utils import get_env_var, tracing_is_enabled

from foundation.langsmith import configure_tracing


@pytest.fixture(autouse=True)
def fresh_env_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no tracing switches and langsmith's cache of them cleared."""
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.delenv(name, raising=False)
    get_env_var.cache_clear()
    yield
    get_env_var.cache_clear()


def test_tracing_requested_without_a_key_is_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    for key in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    assert configure_tracing() is False
    assert not tracing_is_enabled()


def test_tracing_with_a_key_stays_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test")
    assert configure_tracing() is True
    assert tracing_is_enabled()


def test_tracing_is_off_by_default() -> None:
    assert configure_tracing() is False
    assert not tracing_is_enabled()
