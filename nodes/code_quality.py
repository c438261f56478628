"""Static measures of a solution: lint findings (ruff), complexity, signature adherence, risky use."""

from __future__ import annotations

import ast
import json
import subprocess

from ruff.__main__ import find_ruff_bin

from sandbox.python_ast import parse as parse_python

_LINT_RULES = "E,F,W,B,SIM,C901,N"
_RISKY_MODULES = {
    "socket", "subprocess", "requests", "urllib", "http", "ftplib", "smtplib", "ctypes",
    "multiprocessing", "shutil", "signal", "pty", "telnetlib", "asyncio.subprocess",
}  # fmt: skip
_RISKY_CALLS = {"eval", "exec", "__import__", "compile", "os.system", "os.popen", "os.fork",
                "os.kill", "os.remove", "os.unlink", "os.rmdir", "os.execv", "open"}  # fmt: skip


def lint_findings(code: str) -> list[str]:
    """Ruff's findings (style, bugs, complexity > 10, naming) as 'CODE message' lines."""
    proc = subprocess.run(
        [find_ruff_bin(), "check", "--isolated", "--select", _LINT_RULES, "--output-format",
         "json", "--stdin-filename", "solution.py", "-"],
        input=code.rstrip() + "\n", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    try:
        return [f"{d['code']} {d['message']}" for d in json.loads(proc.stdout or "[]")]
    except json.JSONDecodeError:
        return [f"lint failed: {proc.stderr.strip()[:200]}"]


def signature_adherence(code: str, signature: str, entry_point: str) -> tuple[float, str | None]:
    """1.0 when the function exists with the required parameters, 0.5 when it differs, else 0."""
    try:
        tree = parse_python(code)
    except SyntaxError as exc:
        return 0.0, f"does not parse: {exc.msg}"
    functions = {
        n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if entry_point not in functions:
        return 0.0, f"no top-level function named {entry_point}"
    wanted = _parameter_names(signature)
    got = [a.arg for a in functions[entry_point].args.args]
    if wanted is not None and got != wanted:
        return 0.5, f"parameters {got} differ from the signature's {wanted}"
    return 1.0, None


def _parameter_names(signature: str) -> list[str] | None:
    source = signature.strip().rstrip(":")
    try:
        tree = parse_python(f"{source}:\n    pass")
    except SyntaxError:
        return None
    node = tree.body[0]
    return [a.arg for a in node.args.args] if isinstance(node, ast.FunctionDef) else None


def risky_operations(code: str) -> list[str]:
    """Imports and calls that a pure function should not need (network, processes, files, eval)."""
    try:
        tree = parse_python(code)
    except SyntaxError:
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if _is_risky_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _is_risky_module(node.module):
            found.append(f"imports from {node.module}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in _RISKY_CALLS:
            found.append(f"calls {ast.unparse(node.func)}()")
    return sorted(set(found))


def _is_risky_module(name: str) -> bool:
    return name in _RISKY_MODULES or name.split(".")[0] in _RISKY_MODULES
