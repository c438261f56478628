"""Test data and child-process helpers for the memory tests (imported as `memtest`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Tasks and code used across the tests.
BINARY_SEARCH = (
    "Write a function binary_search(xs, target) that returns the index of target in the "
    "sorted list xs, or -1 if it is absent."
)
BINARY_SEARCH_LIKE = (
    "Implement binary search: given a sorted array of integers and a target value, return "
    "its position, or -1 when it is not present."
)
BINARY_SEARCH_FAILED = """\
def binary_search(xs, target):
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid
        else:
            hi = mid
    return -1
"""
BINARY_SEARCH_FIXED = BINARY_SEARCH_FAILED.replace("lo = mid\n", "lo = mid + 1\n")
TIMEOUT_ERROR = "The run was killed: it exceeded the time limit (infinite loop or too slow)."

FIBONACCI = "Compute the n-th Fibonacci number efficiently."
FIBONACCI_LIKE = "Return the nth number of the Fibonacci sequence."
FIBONACCI_CODE = """\
def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
"""
UNRELATED = [
    "Read a CSV file and compute the average of the 'price' column.",
    "Rotate a square matrix by 90 degrees clockwise in place.",
    "Write a function that validates an email address with a regular expression.",
    "Convert an integer to a Roman numeral string.",
    "Group a list of words into lists of anagrams.",
]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this one without anything memory/ sets itself."""
    drop = ("AIMESH_", "MEM0_", "HF_", "TRANSFORMERS_", "ANONYMIZED_TELEMETRY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 240) -> str:
    """Run `code` in a fresh interpreter (in the repo); return its stdout, fail on an error."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


def start_python(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start `code` (with `args` as sys.argv[1:]) in a fresh interpreter, without waiting."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    """Wait for a started child; return its stdout, fail on an error."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err[-4000:]}"
    return out
