"""`aimesh sandbox ...`: the docker backend's image, built offline from the host's Python."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from sandbox import SandboxError
from sandbox.docker_image import docker_client, ensure_image, host_python_rootfs

sandbox_app = typer.Typer(
    help="Build the docker sandbox's image from the host's Python, offline.", no_args_is_help=True
)

# no markup: tags and errors are printed verbatim
_out = Console(markup=False, highlight=False, soft_wrap=True)
_err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True, style="red")


@sandbox_app.command("build-image")
def build_image() -> None:
    """Build the docker backend's image from the host's Python, offline (no registry); skipped
    when an image of the same content is already there. The docker backend uses it when
    AIMESH_SANDBOX_DOCKER_IMAGE is unset. Prints its tag."""
    started = time.monotonic()
    try:
        rootfs = host_python_rootfs()
        tag, built = ensure_image(docker_client(), rootfs)
    except SandboxError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    state = "built" if built else "up to date (same content), not rebuilt"
    seconds = time.monotonic() - started
    _out.print(f"{tag}: {state} in {seconds:.1f} s ({len(rootfs.entries)} files)")
