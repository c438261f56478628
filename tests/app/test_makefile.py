"""The Makefile's targets as a user meets them (dry runs: `make -n` executes nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def notebook_command(tmp_path: Path, uid: int) -> str:
    """The command `make notebook` runs for a user whose `id -u` is `uid`."""
    fake = tmp_path / f"bin-{uid}"
    fake.mkdir()
    (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")  # TEST DOUBLE of id(1)
    (fake / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["make", "-n", "notebook"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    [line] = [line for line in done.stdout.splitlines() if "jupyter lab" in line]
    return line


def test_make_notebook_allows_root_only_as_root(tmp_path: Path) -> None:
    assert notebook_command(tmp_path, 0).split()[-1] == "--allow-root"
    assert "--allow-root" not in notebook_command(tmp_path, 1000)
