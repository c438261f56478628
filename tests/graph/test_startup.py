"""Start-up: heavy dependencies load only where they are used.

`aimesh --help` imports no command module; `memory list` opens mem0's store without the embedder
(onnxruntime) or the LLM client (openai); the first add loads the embedder, never torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import COMMANDS, load_command

HEAVY = (
    "torch",
    "sentence_transformers",
    "transformers",
    "onnxruntime",
    "mem0",
    "chromadb",
    "langgraph",
    "langgraph_api",
    "langchain_openai",
    "openai",
    "agentlightning",
    "matplotlib",
    "fastapi",
)
ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(code: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run `code` in a fresh interpreter; it prints a JSON dict of stages -> heavy modules."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AIMESH_DATA_DIR": str(tmp_path)},
        check=True,
    )
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PRELUDE = f"""
import json, sys
HEAVY = {HEAVY!r}
def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
"""


def test_help_imports_no_heavy_dependency(tmp_path: Path) -> None:
    code = PRELUDE + (
        "import contextlib, io\n"
        "from app.cli.main import app\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    app(['--help'])\n"
        "print(json.dumps({'help': heavy()}))\n"
    )
    assert _loaded_after(code, tmp_path) == {"help": []}


def test_memory_opens_and_lists_without_the_embedder(tmp_path: Path) -> None:
    code = PRELUDE + (
        "from foundation.settings import Settings\n"
        "from memory import AgentMemory\n"
        "stages = {}\n"
        "with AgentMemory.from_settings(Settings.load()) as memory:\n"
        "    memory.list(); memory.counts()\n"
        "    stages['list'] = heavy()\n"
        "    memory.record_task('t1', 'math', 1, 'Return the sum of two integers.')\n"
        "    stages['add'] = heavy()\n"
        "    stages['found'] = [r.kind for r in memory.search('sum of two integers', k=1)]\n"
        "print(json.dumps(stages))\n"
    )
    stages = _loaded_after(code, tmp_path)
    assert "onnxruntime" not in stages["list"] and "openai" not in stages["list"]
    assert "mem0" in stages["list"]
    assert "onnxruntime" in stages["add"]
    assert not {"torch", "sentence_transformers", "transformers"} & set(stages["add"])
    assert "openai" not in stages["add"]  # the LLM client is never built with infer off
    assert stages["found"] == ["task"]


def test_every_listed_command_loads_with_its_listed_help() -> None:
    for name, entry in COMMANDS.items():
        command = load_command(name)
        assert command.short_help == entry.help
        first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
        assert first_paragraph == entry.help, name


def test_a_run_with_memory_embeds_without_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app.cli.main", "run", "-n", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "AIMESH_DATA_DIR": str(tmp_path),
            "AIMESH_LLM": "scripted",
        },
        check=True,
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "onnxruntime" in imported  # the run did embed (memory is on by default)
    assert not {"torch", "sentence_transformers", "transformers"} & imported


def _help_text(code: str, columns: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)},
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("columns", [40, 80, 100, 200])
def test_the_console_scripts_help_is_the_typer_apps(columns: int) -> None:
    script = "import sys; sys.argv[0] = 'aimesh'; from {} import {}; sys.exit({}())"
    quick = _help_text(script.format("app.cli.entry", "main", "main"), columns)
    assert quick == _help_text(script.format("app.cli.main", "app", "app"), columns)
    assert quick.startswith("Usage: aimesh [OPTIONS] COMMAND [ARGS]...")


def test_the_console_scripts_help_imports_neither_typer_nor_click(tmp_path: Path) -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from app.cli.entry import main\n"
        "sys.argv = ['aimesh', '--help']\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "print(json.dumps({'help': sorted({'typer', 'click', 'rich'} & set(sys.modules))}))\n"
    )
    assert _loaded_after(code, tmp_path) == {"help": []}
