"""Memory survives a restart: one process writes, another reads (through the CLI), offline."""

from __future__ import annotations

import json
from pathlib import Path

from memtest import (
    BINARY_SEARCH,
    BINARY_SEARCH_FAILED,
    BINARY_SEARCH_FIXED,
    BINARY_SEARCH_LIKE,
    TIMEOUT_ERROR,
    child_env,
    run_python,
)

# Refuses (and records) every connection and name lookup that is not loopback or a unix socket.
NETWORK_GUARD = """
import socket
attempts = []
LOCAL = ("127.0.0.1", "::1", "localhost")
_connect, _connect_ex, _getaddrinfo = (
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
def _check(address):
    if isinstance(address, tuple) and address[0] not in LOCAL:
        attempts.append(repr(address))
        raise OSError("network access refused by the test")
def connect(self, address):
    _check(address)
    return _connect(self, address)
def connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)
def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL and host is not None:
        attempts.append(repr(host))
        raise socket.gaierror("name lookup refused by the test")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
    connect, connect_ex, getaddrinfo)
"""

WRITER = (
    NETWORK_GUARD
    + f"""
import json, os
from foundation.settings import Settings
from memory import AgentMemory
with AgentMemory.from_settings(Settings()) as memory:
    memory.record_task("t-1", "search", 3, {BINARY_SEARCH!r})
    memory.record_task("t-2", "strings", 5, "Find the longest palindromic substring.")
    memory.record_fix_recipe(
        {BINARY_SEARCH!r}, {TIMEOUT_ERROR!r}, {BINARY_SEARCH_FAILED!r}, {BINARY_SEARCH_FIXED!r})
    hits = memory.recall({BINARY_SEARCH_LIKE!r}).hits
from mem0.memory import telemetry
print(json.dumps({{
    "attempts": attempts, "hits": hits, "telemetry": telemetry.MEM0_TELEMETRY,
    "mem0_dir": os.environ["MEM0_DIR"], "hf_offline": os.environ["HF_HUB_OFFLINE"],
}}))
"""
)


def test_memory_survives_a_restart_offline(tmp_path: Path) -> None:
    env = child_env(AIMESH_DATA_DIR=str(tmp_path / "data"))
    written = json.loads(run_python(WRITER, env).strip().splitlines()[-1])
    assert written["attempts"] == []  # nothing tried to reach the network
    assert written["telemetry"] is False
    assert written["hf_offline"] == "1"
    assert written["mem0_dir"] == str(tmp_path / "data" / "memory" / "mem0")
    assert written["hits"] == 1

    # Another process reads what the first one wrote, through the CLI (also offline).
    export = tmp_path / "export.jsonl"
    reader = f"""
from app.cli.memory import memory_app
memory_app(["search", {BINARY_SEARCH_LIKE!r}, "--kind", "fix_recipe", "--json"],
           prog_name="aimesh memory", standalone_mode=False)
memory_app(["export", {str(export)!r}], prog_name="aimesh memory", standalone_mode=False)
print(json.dumps({{"attempts": attempts}}))
"""
    out = run_python(NETWORK_GUARD + "import json\n" + reader, env).strip().splitlines()
    assert json.loads(out[-1]) == {"attempts": []}
    [row] = [json.loads(line) for line in out[:-1] if line.startswith('{"id"')]
    assert row["kind"] == "fix_recipe"
    assert row["text"].startswith(f"Fix recipe for task: {BINARY_SEARCH}")
    assert row["score"] > 0.4
    kinds = [json.loads(line)["kind"] for line in export.read_text().splitlines()]
    assert kinds == ["task", "task", "fix_recipe"]
