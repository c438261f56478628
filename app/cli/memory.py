"""`aimesh memory ...`: inspect, search, export and clear the agents' memory; serve a shared store."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.cli.common import DataDirOption, count_option, fail, settings_with
from memory.agent_memory import KINDS, AgentMemory, MemoryKind, MemoryRecord
from memory.errors import AgentMemoryError

memory_app = typer.Typer(help="The agents' persistent memory (mem0).", no_args_is_help=True)

_out = Console(soft_wrap=True)
_err = Console(stderr=True)

KindOption = Annotated[
    str | None, typer.Option("--kind", help=f"only this kind: {' | '.join(KINDS)}")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON lines instead of a table")]


def _kind(value: str | None) -> MemoryKind | None:
    if value is None:
        return None
    for kind in KINDS:
        if kind == value:
            return kind
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(KINDS)}", param_hint="--kind")


@contextlib.contextmanager
def _open_memory(data_dir: Path | None) -> Iterator[AgentMemory]:
    """The memory the settings describe; a readable error and exit code 2 if it cannot open."""
    try:
        with _err.status("opening memory (loading the embedder)..."):
            memory = AgentMemory.from_settings(settings_with(data_dir=data_dir))
    except AgentMemoryError as e:
        raise fail(str(e)) from None
    with memory:
        yield memory


def _print_records(records: list[MemoryRecord], title: str, as_json: bool) -> None:
    if as_json:
        for record in records:
            typer.echo(json.dumps(record.to_dict(), ensure_ascii=False))
        return
    table = Table(title=title, show_lines=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    if any(r.score is not None for r in records):
        table.add_column("score", justify="right")
    table.add_column("memory", overflow="fold")
    for record in records:
        row = [
            Text((record.created_at or "")[:19].replace("T", " ")),
            Text(record.kind),
            Text(record.agent_id or ""),
        ]
        if record.score is not None:
            row.append(Text(f"{record.score:.3f}"))
        row.append(Text(record.text))
        table.add_row(*row)
    _out.print(table)


@memory_app.command("list")
def list_(
    kind: KindOption = None,
    count: Annotated[int, count_option("how many memories")] = 20,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The most recent memories, newest first, and how many there are of each kind."""
    selected = _kind(kind)
    with _open_memory(data_dir) as memory:
        records = memory.list(kind=selected, limit=count)
        counts = memory.counts()
    summary = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "empty"
    _print_records(records, f"memory {memory.namespace!r} ({summary})", as_json)


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="text to search for (by meaning)")],
    kind: KindOption = None,
    count: Annotated[
        int, typer.Option("--count", "-n", "-k", min=1, help="how many results (the k of top-k)")
    ] = 5,
    min_score: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="minimum cosine similarity")
    ] = 0.0,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The memories most similar to QUERY, best first, with their cosine similarity."""
    selected = _kind(kind)
    with _open_memory(data_dir) as memory:
        records = memory.search(query, kind=selected, k=count, min_score=min_score)
    _print_records(records, f"{len(records)} memories like {query!r}", as_json)


@memory_app.command()
def export(
    file: Annotated[Path, typer.Argument(help="the JSONL file to write", dir_okay=False)],
    data_dir: DataDirOption = None,
) -> None:
    """Write every memory to FILE as JSON lines (oldest first)."""
    with _open_memory(data_dir) as memory:
        count = memory.export(file)
    _out.print(f"exported {count} memories to {file}", highlight=False)


@memory_app.command()
def clear(
    kind: KindOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Delete the memories (of one kind, or all of them)."""
    selected = _kind(kind)
    with _open_memory(data_dir) as memory:
        count = memory.count(selected)
        what = f"{count} {selected} memories" if selected else f"{count} memories"
        if count == 0:
            _out.print("nothing to clear")
            return
        if not yes and not _confirmed(f"delete {what} from {memory.namespace!r}?"):
            _err.print(f"nothing deleted: {what} kept", highlight=False)
            raise typer.Exit(1)
        deleted = memory.clear(selected)
    _out.print(f"deleted {deleted} memories", highlight=False)


def _confirmed(question: str) -> bool:
    """The user's answer to `question`; with nothing to read it from (no terminal, stdin at its
    end), a usage error saying to pass --yes."""
    try:
        return typer.confirm(question)
    except typer.Abort:
        _err.print()  # end the unanswered question's line
        raise fail("no answer to the confirmation (no terminal?): pass --yes to delete") from None


@memory_app.command("export-embedder")
def export_embedder_command(data_dir: DataDirOption = None) -> None:
    """Export the embedding model to ONNX once, into the cache (a set-up step: needs torch).

    Run by scripts/setup.sh. The export's vectors are checked against sentence-transformers'
    and its files against their sha256; a valid export already in the cache is kept.
    """
    from memory.embedder import resolve_model_dir
    from memory.onnx_export import export_embedder  # torch: imported by this set-up step only

    settings = settings_with(data_dir=data_dir)
    try:
        with _err.status("exporting the embedder to ONNX..."):
            export, made = export_embedder(
                resolve_model_dir(settings.memory.embedder_model), settings.cache_dir
            )
    except AgentMemoryError as e:
        raise fail(str(e)) from None
    done = "exported and verified" if made else "verified"
    _out.print(f"embedder: {export.onnx_path} ({done})", highlight=False, soft_wrap=True)


@memory_app.command()
def serve(
    port: Annotated[
        int | None, typer.Option(help="port [default: AIMESH_MEMORY_CHROMA_PORT]")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="address [default: AIMESH_MEMORY_CHROMA_HOST]")
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(help="where the server keeps its data [default: <memory dir>/chroma]"),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run a Chroma server: the shared memory store for distributed workers (until Ctrl-C)."""
    from memory.chroma_server import ChromaServer, ChromaServerError

    settings = settings_with(data_dir=data_dir)
    ms = settings.memory
    data = path or ms.resolved_dir(settings.data_dir) / "chroma"
    server = ChromaServer(data, host=host or ms.chroma_host, port=port or ms.chroma_port)
    try:
        server.start()
    except ChromaServerError as e:
        raise fail(str(e)) from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server on `kill` too
    with server:
        _out.print(f"Chroma serving {data} at {server.host}:{server.port}", highlight=False)
        _out.print("workers use it with:", highlight=False)
        _out.print(
            f"  AIMESH_MEMORY_BACKEND=chroma AIMESH_MEMORY_CHROMA_HOST={server.host} "
            f"AIMESH_MEMORY_CHROMA_PORT={server.port}",
            highlight=False,
            soft_wrap=True,
        )
        _out.print("Ctrl-C to stop", highlight=False)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return
        raise fail(f"the Chroma server exited with code {code} (log: {server.log_path})")
