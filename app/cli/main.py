"""The `aimesh` command line: the root app and its command groups."""

from __future__ import annotations

import signal
import sys

import typer

from app.cli.dashboard import dashboard as dashboard_command
from app.cli.evaluate import evaluate_command
from app.cli.kafka import register as register_kafka_commands
from app.cli.learn import learn_app
from app.cli.memory import memory_app
from app.cli.model import model_app
from app.cli.run import run
from foundation.langsmith import configure_tracing

app = typer.Typer(
    help="AI-Mesh: closed-loop, self-improving code generation.", no_args_is_help=True
)


@app.callback()
def _startup() -> None:
    """Settle process-wide concerns before any command runs."""
    configure_tracing()
    # SIGTERM exits like Ctrl-C does, so atexit stops the model server and brokers we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


app.command()(run)
app.command("eval")(evaluate_command)
app.add_typer(model_app, name="model", help="Fetch and serve the embedded local model.")
app.add_typer(memory_app, name="memory", help="Inspect and manage the agents' memory.")
app.add_typer(learn_app, name="learn", help="Learn better prompts; inspect and roll back versions.")
register_kafka_commands(app)
app.command("dashboard", help="Serve the live telemetry dashboard.")(dashboard_command)


def main() -> None:
    """Entry point for `python -m app.cli.main`."""
    sys.exit(app())


if __name__ == "__main__":
    main()
