"""The `aimesh` command line in process (typer's CliRunner): version, usage errors, one-line errors
on stderr with exit code 2, help texts kept verbatim, one name for "how many", `--data-dir`."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.core import TyperGroup
from typer.testing import CliRunner

from app.cli.main import COMMANDS, LazyCommand, app, load_command
from app.cli.run import outcome_table
from foundation.errors import InfrastructureError
from graph.datasets import DatasetError
from graph.state import TaskOutcome
from kafka_edges.broker import free_port
from kafka_edges.errors import BrokerUnavailable
from kafka_edges.group_worker import WorkerError
from llm.chat import LLMUnavailableError
from llm.local_model import ModelError
from llm.local_server import ServerError
from memory.chroma_server import ChromaServerError
from memory.errors import AgentMemoryError
from nodes.prompts import SEED_PROMPTS
from prompt_registry.registry import RegistryError
from sandbox import SandboxError

runner = CliRunner(env={"COLUMNS": "400"})  # wide: no help text is wrapped


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("AIMESH_DATA_DIR", str(data))
    monkeypatch.setenv("AIMESH_MEMORY_ENABLED", "false")
    monkeypatch.delenv("AIMESH_KAFKA_BOOTSTRAP", raising=False)
    return data


def one_error_line(result: Any) -> str:
    """The single line a failed command wrote on stderr (asserting it is one, and no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return str(lines[0])


def test_version_prints_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"aimesh {version('ai-mesh')}\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--llm", "bogus"], "'bogus' is not one of 'auto', 'openai', 'local', 'scripted'"),
        (["run", "--sandbox", "vm"], "'vm' is not one of 'local', 'e2b', 'docker'"),
        (["eval", "--retry", "x"], "'x' is not one of 'repair', 'resample'"),
        (["learn", "--algorithm", "x"], "'x' is not one of 'apo', 'bandit', 'skills'"),
        (["run", "--count", "0"], "Invalid value for '--count' / '-n'"),
        (["run", "--tasks", "3"], "No such option: --tasks"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert expected in line and "--help`" in line
    assert result.stdout == ""


def test_an_invalid_setting_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIMESH_LLM", "bogus")
    result = runner.invoke(app, ["learn", "status"])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "llm='bogus'" in line and "'auto', 'openai', 'local' or 'scripted'" in line


def failing_double(error: Exception) -> Any:
    """A test double of a command: it raises `error`."""

    def command() -> None:
        raise error

    return command


@pytest.mark.parametrize(
    "error",
    [
        ModelError("no such model: 'x.gguf'"),
        ServerError("no such LoRA adapter: /x/round1.gguf (see AIMESH_LOCAL_MODEL_LORAS)"),
        ChromaServerError(
            "chroma exited with code 1 while starting; /x/chroma.log ends with:\na\nb"
        ),
        LLMUnavailableError("cannot reach the LLM at http://127.0.0.1:9/v1"),
        BrokerUnavailable("cannot reach Kafka at 127.0.0.1:9"),
        AgentMemoryError("no Chroma server answers at 127.0.0.1:9"),
        InfrastructureError("anything a service raises"),
        SandboxError("the e2b sandbox needs e2b-code-interpreter: pip install 'ai-mesh[e2b]'"),
        DatasetError("dataset file not found: x.jsonl"),
        RegistryError("prompt 'p' has no version 'v9'"),
        WorkerError("unknown role"),
        FileNotFoundError("no eval manifest at x.json"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_service_error_is_one_verbatim_line_and_exit_code_2(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(COMMANDS, "failing-double", LazyCommand(lambda: failing_double(error), "x"))
    result = runner.invoke(app, ["failing-double"])
    assert result.exit_code == 2
    line = one_error_line(result)
    first, *rest = str(error).splitlines()
    assert line.startswith(f"error: {first}")  # verbatim: `[e2b]`, `[server]` are kept
    if rest:  # a log tail: its last line stays, on the same line
        assert line.endswith(f" ... {rest[-1]}")


@pytest.mark.skipif(
    find_spec("e2b_code_interpreter") is not None,
    reason="the e2b extra is installed: its missing API key is reported instead",
)
def test_the_e2b_hint_keeps_its_brackets() -> None:
    result = runner.invoke(
        app, ["run", "-n", "1", "--llm", "scripted", "--no-kafka", "--sandbox", "e2b"]
    )
    assert result.exit_code == 2
    assert "pip install 'ai-mesh[e2b]'" in one_error_line(result)


def test_a_missing_local_model_is_reported_before_any_broker_starts(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["run", "-n", "1", "--llm", "local"],
        env={"AIMESH_LOCAL_MODEL": str(tmp_path / "nope.gguf")},
    )
    assert result.exit_code == 2
    assert "no such model" in one_error_line(result)
    assert "Kafka:" not in result.stdout


def test_model_fetch_of_an_unknown_model_is_exit_code_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "fetch", "--model", str(tmp_path / "nope.gguf")])
    assert result.exit_code == 2
    assert "no such model" in one_error_line(result)


def test_a_chroma_server_that_cannot_start_is_one_line(busy_port: int, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["memory", "serve", "--port", str(busy_port), "--path", str(tmp_path / "chroma")]
    )
    assert result.exit_code == 2
    assert "exited with code" in one_error_line(result)


def help_of(command: list[str]) -> str:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def every_command() -> Iterator[tuple[list[str], Any]]:
    """Every command and subcommand: its words on the command line and its click command."""
    for name in COMMANDS:
        command = load_command(name)
        yield [name], command
        if isinstance(command, TyperGroup):
            for sub_name, sub in command.commands.items():
                yield [name, sub_name], sub


def test_help_texts_keep_their_brackets() -> None:
    bracketed = 0
    for words, command in every_command():
        shown = help_of(words)
        for param in command.params:
            for fragment in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                assert " ".join(fragment.split()) in shown, (words, fragment)
                bracketed += 1
    assert bracketed >= 5  # e.g. `model serve --model [default: AIMESH_LOCAL_MODEL or 0.5b]`


def option_names(command: Any) -> set[str]:
    return {name for param in command.params for name in getattr(param, "opts", [])}


def test_how_many_is_count_everywhere() -> None:
    counted = []
    for words, command in every_command():
        names = option_names(command)
        assert not names & {"--tasks", "--limit", "--top"}, words
        if "--count" in names:
            counted.append(" ".join(words))
            assert "-n" in names, words
    assert set(counted) >= {"run", "eval", "feed", "tail", "memory list", "memory search"}
    search = dict(every_command_by_name())["memory search"]
    assert {"--count", "-n", "-k"} <= option_names(search)


def every_command_by_name() -> Iterator[tuple[str, Any]]:
    for words, command in every_command():
        yield " ".join(words), command


STORING = (
    "run", "eval", "worker", "feed", "recover", "learn", "learn status", "learn history",
    "learn show", "learn promote", "learn rollback", "memory list", "memory search",
    "memory export", "memory clear", "memory serve",
)  # fmt: skip
"""The commands that read or write the data dir (checkpoints, ledger, prompts, memory)."""


def test_every_command_that_stores_data_takes_data_dir() -> None:
    commands = dict(every_command_by_name())
    for name in STORING:
        assert "--data-dir" in option_names(commands[name]), name


def test_run_keeps_its_data_in_the_given_data_dir(tmp_path: Path, data_dir: Path) -> None:
    chosen = tmp_path / "elsewhere"
    result = runner.invoke(
        app, ["run", "-n", "1", "--llm", "scripted", "--no-kafka", "--data-dir", str(chosen)]
    )
    assert result.exit_code == 0, result.output
    assert (chosen / "checkpoints.sqlite").exists() and list((chosen / "batches").iterdir())
    assert not data_dir.exists()


def test_learn_history_shows_every_prompt_without_a_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "history", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("consumer.system", "producer.system", "reviewer.system"):
        assert name in result.stdout
    one = runner.invoke(app, ["learn", "history", "producer.system", "--data-dir", str(tmp_path)])
    assert one.exit_code == 0 and "producer.system" in one.stdout
    assert "consumer.system" not in one.stdout


@pytest.mark.parametrize(
    "command",
    [["history", "bogus"], ["show", "bogus"], ["rollback", "bogus"], ["promote", "bogus", "v1"]],
)
def test_an_unknown_prompt_name_is_an_error_listing_the_names(
    command: list[str], tmp_path: Path
) -> None:
    result = runner.invoke(app, ["learn", *command, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "no prompt named 'bogus'" in line and "consumer.system" in line


def render(table: Any, width: int = 80) -> str:
    """A rich renderable as a terminal of `width` columns shows it."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_the_results_table_names_the_task_function_and_category_whole_at_80_columns() -> None:
    outcome = TaskOutcome(
        index=0, task_id="HumanEval-109", entry_point="separate_paren_groups_of_a_long_name",
        category="humaneval", difficulty=5, attempts=3, first_attempt_passed=False, passed=True,
        reward=0.9, verdict="ok", tokens=10, seconds=12.5,
    )  # fmt: skip
    table = outcome_table([outcome])
    assert [c.header for c in table.columns][1:4] == ["task", "function", "category"]
    text = render(table)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "HumanEval-109" in text and "humaneval" in text and "…" not in text


def test_learn_tables_keep_prompt_names_whole_at_80_columns(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        app, ["learn", "history", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for name in ("consumer.system", "producer.system", "reviewer.system"):
        assert name in result.stdout
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_learn_show_prints_the_prompt_verbatim(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        app, ["learn", "show", "consumer.system", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    text = SEED_PROMPTS["consumer.system"].text
    assert any(len(line) > 80 for line in text.splitlines())  # would be wrapped at 80
    assert result.stdout.split("\n", 1)[1].rstrip("\n") == text.rstrip("\n")


def test_run_takes_humaneval_as_its_dataset_like_eval() -> None:
    result = runner.invoke(
        app, ["run", "--dataset", "humaneval", "-n", "1", "--llm", "scripted", "--no-kafka"]
    )
    assert result.exit_code == 0, result.output
    assert "has_close_elements" in result.stdout


def test_learn_names_the_model_that_answers(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["learn", "--algorithm", "bandit", "--llm", "scripted", "--rounds", "1", "--train", "2",
         "--val", "2", "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model scripted double" in result.stdout
    assert "qwen" not in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["learn", "--algorithm", "expert-iteration", "--llm", "scripted"],
        ["run", "-n", "1", "--learn-every", "1", "--learn-algorithm", "expert-iteration",
         "--llm", "scripted", "--no-kafka"],
    ],
)  # fmt: skip
def test_expert_iteration_without_the_embedded_model_is_one_line(
    command: list[str], tmp_path: Path
) -> None:
    result = runner.invoke(app, [*command, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith(
        "error: expert iteration trains the embedded model's weights"
    )


def test_run_with_learning_counts_only_the_rounds_that_ran() -> None:
    result = runner.invoke(
        app, ["run", "-n", "4", "--learn-every", "2", "--llm", "scripted", "--no-kafka"]
    )
    assert result.exit_code == 0, result.output
    # 4 tasks seen, a round needs 12: both triggers ran no round, and the line says so
    assert "learning: 0 round(s) (none); 2 not run (too few tasks seen yet)" in result.stdout


def test_the_server_with_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = runner.invoke(
        app, ["server", "--llm", "scripted", "--bootstrap", bootstrap, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: cannot reach Kafka at {bootstrap}")


@pytest.mark.parametrize(
    ("variable", "field"),
    [("AIMESH_LOCAL_MODEL_LORAS", "local_model_loras"), ("AIMESH_KAFKA_CONFIG", "kafka_config")],
)
def test_a_list_or_mapping_setting_that_is_not_json_is_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    monkeypatch.setenv(variable, "/not/json")
    result = runner.invoke(app, ["learn", "status"])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert field in line and "JSON" in line


def test_a_malformed_database_url_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMESH_DATABASE_URL", "host=127.0.0.1 port")
    result = runner.invoke(app, ["learn", "status"])
    assert result.exit_code == 2
    assert "database_url" in one_error_line(result)


def test_a_database_nobody_answers_at_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIMESH_DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{port}/x")
    result = runner.invoke(app, ["learn", "status"])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "did not answer" in line
    assert "secret" not in line
