"""`aimesh topics` and `aimesh tail`: the kcat of the mesh (list the topics, watch one)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

from app.cli.common import (
    BootstrapOption,
    broker_settings,
    compact_table,
    console,
    count_option,
    fail,
)
from graph.topics import ALL_TOPICS
from graph.wire import MODEL_BY_TOPIC
from kafka_edges.admin import base_name
from kafka_edges.codec import H_ATTEMPT, H_RUN_ID, H_SOURCE, H_TASK_ID
from kafka_edges.reader import Record, TopicReader
from kafka_edges.topic_stats import topic_stats

IDENTITY = {"schema_version", "message_type", "task_id", "run_id", "state", "produced_at"}
"""Fields the header line already shows (the full state is left to `--json` and `replay`)."""
CODE_FIELDS = {"code"}


def topics_command(bootstrap: BootstrapOption = None) -> None:
    """List the mesh's topics: partitions, messages, each consumer group's lag."""
    settings = broker_settings(bootstrap)
    stats = topic_stats(settings)
    prefix = settings.kafka_topic_prefix
    title = f"topics on {settings.kafka_bootstrap}" + (f" (prefix {prefix!r})" if prefix else "")
    table = compact_table(
        title, "topic", "partitions", "messages", "consumer groups (lag)",
        wrap={"consumer groups (lag)"},
    )  # fmt: skip
    for topic in stats:
        lags = "\n".join(f"{g.group} ({g.lag})" for g in topic.groups) or "-"
        table.add_row(Text(topic.name), str(topic.partitions), str(topic.messages), Text(lags))
    console.print(table)


def tail_command(
    topic: Annotated[str, typer.Argument(help=f"one of: {', '.join(ALL_TOPICS)}")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="start at the oldest message, not the newest")
    ] = False,
    task: Annotated[
        str | None, typer.Option("--task", help="only this task's (or run's) messages")
    ] = None,
    count: Annotated[int | None, count_option("stop after this many messages")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print each message's value as one JSON line")
    ] = False,
    bootstrap: BootstrapOption = None,
) -> None:
    """Print a topic's messages as they arrive (pretty), until Ctrl-C.

    Like `kcat -C -t TOPIC`: from the newest message on, or `--from-beginning`.
    """
    settings = broker_settings(bootstrap)
    name = base_name(topic, settings.kafka_topic_prefix)
    if name not in ALL_TOPICS:
        raise fail(f"unknown topic {topic!r}; the mesh's topics are: {', '.join(ALL_TOPICS)}")
    shown = 0
    with TopicReader(
        name, settings, models=MODEL_BY_TOPIC, from_beginning=from_beginning
    ) as reader:
        if not reader.exists:
            raise fail(
                f"topic {reader.topic!r} does not exist on {settings.kafka_bootstrap} yet "
                "(`aimesh broker`, `aimesh worker` and `aimesh run` create the topics)"
            )
        try:
            for record in reader:
                if task is not None and task not in _identity(record):
                    continue
                if as_json:
                    typer.echo((record.value or b"").decode("utf-8", errors="replace"))
                else:
                    console.print(record_view(record, settings.kafka_topic_prefix))
                shown += 1
                if count is not None and shown >= count:
                    return
        except KeyboardInterrupt:  # the usual way to stop watching
            return


def _identity(record: Record) -> set[str | None]:
    """The ids a record can be picked by: its key, task id and run id."""
    return {record.key, record.headers.get(H_TASK_ID), record.headers.get(H_RUN_ID)}


def record_view(record: Record, prefix: str = "") -> RenderableType:
    """One message, pretty: a header (where and when, its ids) and its fields; code highlighted."""
    when = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    header = Text.assemble(
        (base_name(record.topic, prefix), "bold cyan"),
        f" p{record.partition}@{record.offset} ",
        (when, "dim"),
        f" key={record.key}",
    )
    for label, header_name in (("run", H_RUN_ID), ("attempt", H_ATTEMPT), ("from", H_SOURCE)):
        if header_name in record.headers:
            header.append(f" {label}={record.headers[header_name]}")
    if record.message is None:
        raw = (record.value or b"")[:300].decode("utf-8", errors="replace")
        problem = record.error or "no model for this topic"
        return Group(header, Text(f"  undecodable ({problem}): {raw}", style="red"))
    parts: list[RenderableType] = [header]
    fields: dict[str, Any] = record.message.model_dump(mode="json", exclude=IDENTITY)
    for key, value in fields.items():
        if key in CODE_FIELDS and value:
            parts.append(Text(f"  {key}:"))
            parts.append(Syntax(value, "python", background_color="default", padding=(0, 4)))
        elif isinstance(value, str) and "\n" in value:
            parts.append(Text(f"  {key}:"))
            parts.append(Text("\n".join(f"    {line}" for line in value.splitlines())))
        elif value not in (None, "", [], {}):
            shown = value if isinstance(value, str) else json.dumps(value)
            parts.append(Text(f"  {key}: {shown}"))
    return Group(*parts)
