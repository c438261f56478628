"""What every `aimesh` command shares: the console, readable infrastructure errors, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.distributed import DistributedRunError
from foundation.errors import InfrastructureError
from foundation.settings import Settings
from graph.datasets import DatasetError
from graph.node_worker import WorkerError
from memory import AgentMemoryError
from sandbox import SandboxError

console = Console()

INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    InfrastructureError,
    SandboxError,
    DatasetError,
    FileNotFoundError,
    DistributedRunError,
    WorkerError,
    AgentMemoryError,
)
"""Failures that end a command with one readable line and exit code 2."""


@contextlib.contextmanager
def readable_errors() -> Iterator[None]:
    """Turn infrastructure failures into one readable line and exit code 2."""
    try:
        yield
    except INFRASTRUCTURE_ERRORS as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def settings_with(**overrides: Any) -> Settings:
    """The entry point's settings, with the CLI's explicit options on top."""
    settings = Settings.load()
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate({**settings.model_dump(), **given}) if given else settings


def progress() -> Progress:
    """A progress display with a bar, a count and the elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
