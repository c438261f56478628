"""What every `aimesh` command shares: the console, one-line errors, shared options, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from foundation.errors import InfrastructureError
from foundation.settings import LLMProvider, Settings
from graph.datasets import DatasetError
from kafka_edges.broker import check_reachable
from kafka_edges.errors import BrokerError
from kafka_edges.group_worker import WorkerError
from prompt_registry.registry import RegistryError
from sandbox import SandboxError

console = Console(soft_wrap=True)
"""stdout: texts printed verbatim (a line longer than the terminal is not broken by us), tables
fitted to the terminal (80 columns when piped)."""
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)

INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    InfrastructureError,  # LLM, local model server, broker, memory store, Chroma server, ...
    SandboxError,
    DatasetError,
    FileNotFoundError,
    WorkerError,
    RegistryError,
)
"""Failures that end a command with one readable line on stderr and exit code 2."""

USAGE_EXIT = 2
"""The exit code of a usage error and of unreachable or broken infrastructure."""


def print_error(message: str) -> None:
    """`error: <message>` on stderr, as one line, verbatim (no markup): a message of several
    lines (a server's log tail) keeps its first and its last line."""
    lines = [" ".join(line.split()) for line in message.splitlines() if line.strip()]
    line = f"{lines[0]} ... {lines[-1]}" if len(lines) > 1 else "".join(lines)
    _stderr.print(Text.assemble(("error:", "bold red"), " ", line))


def fail(message: str) -> typer.Exit:
    """Print `message` as the command's one error line; the Exit (code 2) to raise."""
    print_error(message)
    return typer.Exit(USAGE_EXIT)


@contextlib.contextmanager
def readable_errors() -> Iterator[None]:
    """Turn infrastructure failures and invalid settings into one error line and exit code 2."""
    try:
        yield
    except INFRASTRUCTURE_ERRORS as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        raise fail(settings_problem(exc)) from None
    except SettingsError as exc:  # a value the environment source cannot even parse
        raise fail(
            f"invalid setting: {exc} (a list or mapping is JSON, e.g. "
            """AIMESH_LOCAL_MODEL_LORAS='["/path/a.gguf"]')"""
        ) from None


def settings_problem(exc: ValidationError) -> str:
    """A settings validation error as one line: the setting, what was given, what is valid."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}={error.get('input')!r}: {error['msg']}")
    return f"invalid setting {'; '.join(parts)} (check the AIMESH_* environment and .env)"


def settings_with(**overrides: Any) -> Settings:
    """The entry point's settings, with the CLI's explicit options on top."""
    settings = Settings.load()
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate({**settings.model_dump(), **given}) if given else settings


def broker_settings(bootstrap: str | None, **overrides: Any) -> Settings:
    """Settings for a command that talks to a running broker, checked reachable (exit 2 with a
    hint when none is configured or it does not answer)."""
    settings = settings_with(kafka_bootstrap=bootstrap, **overrides)
    if not settings.kafka_bootstrap:
        raise fail(
            "no Kafka bootstrap servers configured: set AIMESH_KAFKA_BOOTSTRAP or pass --bootstrap "
            "(`aimesh broker` starts one)"
        )
    try:
        check_reachable(settings.kafka_bootstrap, settings.kafka_config)
    except BrokerError as exc:
        raise fail(str(exc)) from None
    return settings


def count_option(what: str) -> Any:
    """`--count/-n`: the one name for "how many" (tasks, problems, memories, messages)."""
    return typer.Option("--count", "-n", min=1, help=what)


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="where the mesh keeps its data (checkpoints, ledger, memory, prompts) "
        "[default: AIMESH_DATA_DIR or .aimesh]",
    ),
]
LlmOption = Annotated[
    LLMProvider | None, typer.Option(help="the model [default: AIMESH_LLM or auto]")
]
BootstrapOption = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers [default: AIMESH_KAFKA_BOOTSTRAP]"),
]


def progress() -> Progress:
    """A progress display with a bar, a count and the elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def compact_table(title: str, *columns: str, wrap: Collection[str] = ()) -> Table:
    """A table that fits a terminal of 80 columns: no rules between the columns, and every cell
    kept whole (the names a user types back: prompts, versions, task ids, topics) but those of
    the free-text columns in `wrap`, which wrap (a word too long for its column is folded, not
    cut)."""
    table = Table(title=title, box=None, pad_edge=False)
    for column in columns:
        wraps = column in wrap
        table.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    return table
