"""The `aimesh` command line: the root app and its command groups.

Each command group lives in its own module and is imported only when that command runs: the
root knows every command's name and one-line help, so `aimesh --help` (and a typo) answers
without importing LangGraph, the model clients, memory or the dashboard. The root group also
ends every failure the same way: one `error: ...` line on stderr, exit code 2 for a usage error
and for a service that is unreachable or broken (`app.cli.common.readable_errors`).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from app.cli.commands import COMMANDS, ROOT_HELP, VERSION_HELP, LazyCommand
from foundation.langsmith import configure_tracing

__all__ = ["COMMANDS", "LazyCommand", "LazyGroup", "app", "load_command", "main", "usage_line"]

MARKUP: None = None
"""Help texts are printed verbatim (click's plain help): Rich markup would eat `[default: ...]`
and Markdown `<memory dir>`."""


def load_command(name: str) -> Any:
    """The click command for `name`, its module imported now."""
    entry = COMMANDS[name]
    target = entry.load()
    holder = typer.Typer(add_completion=False, rich_markup_mode=MARKUP)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name, help=entry.help)
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        command = group.commands[name]
    else:
        holder.command(name)(target)
        command = typer.main.get_command(holder)
    command.short_help = entry.help
    return command


class LazyGroup(TyperGroup):
    """The root group: lists `COMMANDS` from their names and help, loads one on invocation, and
    ends every error with one line on stderr."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help)
        command = load_command(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        # imported once a command runs (its own module is loaded by then), not for `--help`
        from app.cli.common import readable_errors

        with readable_errors():
            return super().invoke(ctx)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        plain = (args, prog_name, complete_var, False, windows_expand_args)
        if not standalone_mode:
            return super().main(*plain, **extra)
        try:
            code = super().main(*plain, **extra)
        except typer.TyperException as exc:  # usage errors: a wrong option, a bad value
            sys.stderr.write(f"error: {usage_line(exc)}\n")
            code = getattr(exc, "exit_code", 2)
        except typer.Abort:
            code = 130
        sys.exit(code if isinstance(code, int) else 0)


def usage_line(exc: Exception) -> str:
    """A usage error as one line, with where to read the valid usage."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    # typer checks a choice with pydantic, whose message starts "Value error, "
    message = " ".join(message.replace("Value error, ", "").split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see `{ctx.command_path} --help`)" if ctx is not None else message


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"aimesh {version('ai-mesh')}")
        raise typer.Exit()


app = typer.Typer(
    cls=LazyGroup,
    help=ROOT_HELP,
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)


@app.callback()
def _startup(
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help=VERSION_HELP),
    ] = False,
) -> None:
    """Settle process-wide concerns before any command runs."""
    configure_tracing()
    # SIGTERM exits like Ctrl-C does, so atexit stops the model server and brokers we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> None:
    """Entry point for `python -m app.cli.main`."""
    sys.exit(app())


if __name__ == "__main__":
    main()
