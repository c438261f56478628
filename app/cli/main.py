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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from foundation.langsmith import configure_tracing

MARKUP: None = None
"""Help texts are printed verbatim (click's plain help): Rich markup would eat `[default: ...]`
and Markdown `<memory dir>`."""


def _run() -> Any:
    from app.cli.run import run

    return run


def _eval() -> Any:
    from app.cli.evaluate import evaluate_command

    return evaluate_command


def _broker() -> Any:
    from app.cli.kafka import broker_command

    return broker_command


def _worker() -> Any:
    from app.cli.kafka import worker_command

    return worker_command


def _feed() -> Any:
    from app.cli.kafka import feed_command

    return feed_command


def _recover() -> Any:
    from app.cli.kafka import recover_command

    return recover_command


def _topics() -> Any:
    from app.cli.topics import topics_command

    return topics_command


def _tail() -> Any:
    from app.cli.topics import tail_command

    return tail_command


def _replay() -> Any:
    from app.cli.replay import replay_command

    return replay_command


def _server() -> Any:
    from app.cli.server import server_command

    return server_command


def _dashboard() -> Any:
    from app.cli.dashboard import dashboard

    return dashboard


def _model() -> Any:
    from app.cli.model import model_app

    return model_app


def _memory() -> Any:
    from app.cli.memory import memory_app

    return memory_app


def _sandbox() -> Any:
    from app.cli.sandbox import sandbox_app

    return sandbox_app


def _learn() -> Any:
    from app.cli.learn import learn_app

    return learn_app


@dataclass(frozen=True)
class LazyCommand:
    """A command the root lists by name and help, and imports only when it is invoked."""

    load: Callable[[], Any]  # the command function, or the command group's Typer app
    help: str


COMMANDS: dict[str, LazyCommand] = {
    "run": LazyCommand(_run, "Run tasks through the closed loop and print a results table."),
    "eval": LazyCommand(
        _eval,
        "Measure, on the same problems in one run: (a) greedy first attempt, (b) blind "
        "best-of-K, (c) the loop with public feedback, (d) the loop with oracle feedback, (e) the "
        "model card's prompt shape, (f) (b)'s candidates chosen by model-written tests; with "
        "intervals.",
    ),
    "broker": LazyCommand(
        _broker,
        "Start the embedded Kafka broker (tansu, in memory), create the topics, run until Ctrl-C.",
    ),
    "worker": LazyCommand(
        _worker,
        "Run a node as a Kafka consumer-group worker (`--role all`: every node, in one process).",
    ),
    "feed": LazyCommand(
        _feed,
        "Send tasks to the producer workers, or with --server to the LangGraph server's "
        "intake; optionally wait for their reports.",
    ),
    "recover": LazyCommand(
        _recover,
        "Re-publish the last transition of every unfinished run from the delivery ledger.",
    ),
    "topics": LazyCommand(
        _topics, "List the mesh's topics: partitions, messages, each consumer group's lag."
    ),
    "tail": LazyCommand(_tail, "Print a topic's messages as they arrive (pretty), until Ctrl-C."),
    "replay": LazyCommand(
        _replay,
        "A task's whole story read back from its topics: the task, each attempt's code and "
        "verdict, the review, the report.",
    ),
    "server": LazyCommand(
        _server,
        "Serve the graph with LangGraph's dev server (API, Studio, the dashboard, the Kafka "
        "intake), its broker and model named, from any directory, until Ctrl-C.",
    ),
    "dashboard": LazyCommand(
        _dashboard, "Serve the live dashboard (telemetry, rewards, reports) until Ctrl-C."
    ),
    "model": LazyCommand(_model, "Fetch and serve the embedded local model."),
    "memory": LazyCommand(_memory, "Inspect and manage the agents' memory."),
    "learn": LazyCommand(_learn, "Learn better prompts; inspect and roll back versions."),
    "sandbox": LazyCommand(
        _sandbox, "Build the docker sandbox's image from the host's Python, offline."
    ),
}


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
    help="AI-Mesh: closed-loop, self-improving code generation.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)


@app.callback()
def _startup(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
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
