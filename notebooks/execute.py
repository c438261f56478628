"""Execute the notebooks in this directory with the project's own interpreter; check them, or
refresh their saved outputs.

    .venv/bin/python notebooks/execute.py                 # execute every notebook, save nothing
    .venv/bin/python notebooks/execute.py quickstart      # one (name or path)
    .venv/bin/python notebooks/execute.py --save          # refresh: save the outputs in place

A run fails (exit 1) on a cell error or on anything a cell writes to stderr (a warning, a log
line): saved outputs are free of both.

The kernel is `sys.executable` (a kernel spec written to a temporary directory: nothing is
installed into ~/.local/share/jupyter, and no other `python3` kernel can be picked by mistake).
It starts in a fresh temporary working directory with the AIMESH_* variables of the caller's
environment removed, so the saved outputs do not depend on who ran them or from where.
tests/notebooks/test_notebooks.py runs the same `execute` in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "aimesh"
"""The venv's kernel: the name `make notebook` registers (`ipykernel install --sys-prefix`) and the
saved notebooks ask for."""
KERNEL_DISPLAY_NAME = "Python (AI-Mesh .venv)"
CELL_TIMEOUT_S = 240
"""Longest a single cell may run before the execution fails."""
DROPPED_ENV = ("MPLBACKEND", "JUPYTER_PATH", "PYTHONSTARTUP")


def notebooks() -> list[Path]:
    """Every notebook in notebooks/, by name."""
    return sorted(HERE.glob("*.ipynb"))


def kernel_env() -> dict[str, str]:
    """The caller's environment without AIMESH_* settings (the notebooks choose their own)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AIMESH_") and k not in DROPPED_ENV
    }
    env.update(
        {
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # debugpy's frozen-modules warning
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    return env


def _manager_class(kernel_dir: Path) -> type[AsyncKernelManager]:
    sockets = str(kernel_dir / "kernel-ipc")  # absolute: the kernel runs in another cwd
    ipc = len(sockets) < 90  # a Unix socket path is limited to 107 bytes; else fall back to TCP

    class VenvKernelManager(AsyncKernelManager):
        """Looks kernel specs up in `kernel_dir` only; talks to the kernel over local IPC sockets
        (no TCP ports, no unencrypted-TCP warning) when their path is short enough."""

        @default("transport")
        def _local_ipc(self) -> str:
            return "ipc" if ipc else "tcp"

        @default("ip")
        def _socket_prefix(self) -> str:
            return sockets if ipc else "127.0.0.1"

        @default("connection_file")
        def _connection_file_here(self) -> str:
            return str(kernel_dir / "connection.json")  # not in ~/.local/share/jupyter/runtime

        @default("kernel_spec_manager")
        def _only_our_kernel(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[str(kernel_dir)])

    return VenvKernelManager


@dataclass
class Executed:
    """An executed notebook, how long it took, and what the probe printed (if one was given)."""

    path: Path
    notebook: Any
    seconds: float
    probe: Any = None


def execute(path: Path, *, timeout_s: int = CELL_TIMEOUT_S, probe: str | None = None) -> Executed:
    """Run every cell of the notebook at `path` in a fresh kernel; raise on the first cell error.

    `probe`, if given, is code run in the same kernel after the last cell; it must print one JSON
    document, returned as `Executed.probe`. The probe cell is not kept in the notebook.
    """
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="aimesh-nb-") as tmp:
        kernels = Path(tmp) / "kernels"
        write_kernel_spec(kernels / KERNEL_NAME)
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        if probe is not None:
            nb.cells.append(nbformat.v4.new_code_cell(probe))
        client = NotebookClient(
            nb,
            kernel_name=KERNEL_NAME,
            kernel_manager_class=_manager_class(kernels),
            timeout=timeout_s,
            startup_timeout=120,
            record_timing=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(workdir)}},
        )
        started = time.perf_counter()
        env = {**kernel_env(), "IPYTHONDIR": str(Path(tmp) / "ipython")}  # leave ~/.ipython alone
        client.execute(env=env)
        seconds = time.perf_counter() - started
    result = None
    if probe is not None:
        cell = nb.cells.pop()
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        result = json.loads(text)
    return Executed(path, nb, seconds, result)


def stderr_outputs(nb: Any) -> list[str]:
    """What the notebook's cells wrote to stderr (warnings, log lines), one entry per output."""
    return [
        "".join(output.get("text", ""))
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


def save(done: Executed) -> None:
    """Write an executed notebook in place, asking for the venv's kernel."""
    done.notebook.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
    }
    nbformat.write(done.notebook, done.path)


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.suffix != ".ipynb":
        path = HERE / f"{name}.ipynb"
    if not path.is_file():
        raise SystemExit(f"no notebook {name!r} (have: {', '.join(p.stem for p in notebooks())})")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names or paths (default: all)")
    parser.add_argument("--save", action="store_true", help="save the executed notebooks in place")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [_resolve(n) for n in args.names] or notebooks()
    failed = 0
    for path in paths:
        try:
            done = execute(path, timeout_s=args.timeout)
        except Exception as exc:
            failed += 1
            print(f"FAILED {path.name}:\n{exc}", file=sys.stderr)
            continue
        stderr = stderr_outputs(done.notebook)
        if stderr:
            failed += 1
            print(f"FAILED {path.name}: cells wrote to stderr:\n{stderr[0][:2000]}", file=sys.stderr)
            continue
        if args.save:
            save(done)
        print(f"{'saved' if args.save else 'checked'} {path.name} ({done.seconds:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
