"""The `aimesh` command table: every command's name, one-line help and the module that holds it.

Nothing here imports typer or a command's module: the root (`app.cli.main`) lists commands from
this table and imports one only when it runs, and `aimesh --help` is printed from it
(`app.cli.entry`) without importing typer at all.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing and dataclasses cost more than the interpreter's own start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

ROOT_HELP = "AI-Mesh: closed-loop, self-improving code generation."
VERSION_HELP = "Print the version and exit."


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


class LazyCommand:
    """A command the root lists by name and help, and imports only when it is invoked."""

    __slots__ = ("help", "load")

    def __init__(self, load: Callable[[], Any], help: str) -> None:
        self.load = load  # the command function, or the command group's Typer app
        self.help = help


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
    "model": LazyCommand(_model, "Fetch and serve the embedded local model; build its engine."),
    "memory": LazyCommand(_memory, "Inspect and manage the agents' memory."),
    "learn": LazyCommand(_learn, "Learn better prompts; inspect and roll back versions."),
    "sandbox": LazyCommand(
        _sandbox, "Build the docker sandbox's image from the host's Python, offline."
    ),
}
