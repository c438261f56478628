"""The notebooks never rot: each one is executed in a fresh kernel on this interpreter (scripted LLM
test double, embedded broker), must run without a cell error, and must show what it is there to
show. `notebooks/execute.py` does the executing (and, with `--save`, refreshes the saved outputs).

A probe run in the notebook's kernel after its last cell reports the notebook's own variables as
JSON; the probe is not kept in the notebook.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 180
EDGE_TOPICS = ("ai_topic", "ai_solutions", "ai_verified_solutions", "ai_reviews", "ai_reports")


def _load_executor() -> ModuleType:
    name = "aimesh_notebooks_execute"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, NOTEBOOKS / "execute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


executor = _load_executor()


def _output_text(nb: Any) -> str:
    """Everything the reader sees in the notebook's outputs, as text."""
    parts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            data = output.get("data", {})
            parts.append(data.get("text/markdown") or data.get("text/plain") or "")
    return "\n".join(parts)


def _images(nb: Any) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        for output in cell.get("outputs", [])
    )


# -- per-notebook probes and checks ---------------------------------------------------------------

QUICKSTART_PROBE = """
import json, os, sys
print(json.dumps({
    "executable": sys.executable,
    "cwd": os.getcwd(),
    "topic_counts": topic_counts,
    "expected": expected,
    "outcomes": [o.model_dump(mode="json") for o in outcomes],
    "task": state.task.entry_point,
    "attempts_passed": [a.execution.passed for a in state.attempts],
    "review": state.review.reward,
    "verdict": state.report.verdict,
    "embedded": broker.embedded,
    "broker_running_after_cleanup": broker.broker.running,
}))
"""


def check_quickstart(result: dict[str, Any], text: str, nb: Any) -> None:
    assert result["executable"] == sys.executable  # the project's interpreter, not some python3
    assert not Path(result["cwd"]).is_relative_to(ROOT)  # a temporary working dir
    counts = result["topic_counts"]
    for topic in EDGE_TOPICS:
        assert counts[topic] > 0, f"no messages on {topic}: {counts}"
        assert topic in text
    assert counts == result["expected"], counts
    assert counts["ai_telemetry"] > 0
    assert result["embedded"] and not result["broker_running_after_cleanup"]
    assert [o["passed"] for o in result["outcomes"]] == [True, True, True]
    assert counts["ai_topic"] == sum(o["attempts"] for o in result["outcomes"]) == 4
    # the task shown in detail is the one that failed first and was fixed after feedback
    assert result["task"] == "reverse_words"
    assert result["attempts_passed"] == [False, True]
    assert 0.0 <= result["review"] <= 1.0 and result["verdict"] in ("ok", "warn", "flag")
    assert "assert reverse_words('hello') == 'hello' → AssertionError" in text


MEMORY_PROBE = """
import json
print(json.dumps({
    "runs": [
        {"entry_point": s.task.entry_point, "passed": [a.execution.passed for a in s.attempts]}
        for s in runs
    ],
    "coverage": coverage,
    "fix_recipes": [r.text for r in fix_recipes],
    "best_practices": len(best_practices),
    "failures": len(failures),
    "recall_kinds": [r.kind for r in recall.records],
    "recall_prompt": recall.to_prompt(),
    "unrelated_hits": unrelated.hits,
    "consumer_prompt": consumer_prompt,
    "memory_hits_again": again.memory_hits,
}))
"""


def check_memory(result: dict[str, Any], text: str, nb: Any) -> None:
    runs = result["runs"]
    assert runs[1] == {"entry_point": "reverse_words", "passed": [False, True]}
    assert all(run["passed"][-1] for run in runs)
    recipes = result["fix_recipes"]
    assert len(recipes) == sum(len(run["passed"]) > 1 for run in runs) == 2
    assert sum("reverse_words" in r for r in recipes) == 1
    assert result["best_practices"] == len(runs) and result["failures"] == 2
    assert {c for c, _, _ in result["coverage"]} == {"math", "strings", "lists"}
    assert "fix_recipe" in result["recall_kinds"] and "best_practice" in result["recall_kinds"]
    assert "Fixes that worked on similar tasks" in result["recall_prompt"]
    assert "Fixes that worked on similar tasks" in text
    assert result["unrelated_hits"] == 0
    assert "From experience (" in result["consumer_prompt"]
    assert result["memory_hits_again"] >= 2


LEARNING_PROBE = """
import json
print(json.dumps({
    "decisions": [r.decision for r in reports],
    "promoted": [r.active_after for r in reports if r.decision == "promoted"],
    "live_means": live_means,
    "learned": learned,
    "restored": restored.version,
    "again": again.version,
    "before_versions": sorted({t.prompt_versions.get(C) for t in before}),
    "after_versions": sorted({t.prompt_versions.get(C) for t in after}),
    "reward_rows": len(rows),
}))
"""


def check_learning(result: dict[str, Any], text: str, nb: Any) -> None:
    assert "promoted" in result["decisions"], result["decisions"]
    assert result["before_versions"] == ["v1"]
    assert result["after_versions"] == [result["learned"]] == [result["promoted"][-1]]
    assert result["live_means"]["after"] > result["live_means"]["before"]
    assert result["restored"] == "v1" and result["again"] == result["learned"]
    assert result["reward_rows"] >= 12  # two live batches of six, plus the bandit's runs
    assert "rolled_back" in text and "reactivated" in text
    assert _images(nb) >= 1, "the reward chart (inline PNG) is missing"


CHECKS: dict[str, tuple[str, Callable[[dict[str, Any], str, Any], None]]] = {
    "quickstart": (QUICKSTART_PROBE, check_quickstart),
    "memory": (MEMORY_PROBE, check_memory),
    "learning": (LEARNING_PROBE, check_learning),
}


def _notebook_params() -> list[Any]:
    params = []
    for path in executor.notebooks():
        marks = [pytest.mark.broker] if path.stem == "quickstart" else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_the_three_notebooks_exist() -> None:
    assert {p.stem for p in executor.notebooks()} >= set(CHECKS)


@pytest.mark.parametrize("path", _notebook_params())
def test_notebook_executes_and_shows_what_it_should(path: Path) -> None:
    probe, check = CHECKS.get(path.stem, (None, None))
    done = executor.execute(path, timeout_s=CELL_TIMEOUT_S, probe=probe)
    text = _output_text(done.notebook)
    assert "Traceback (most recent call last)" not in text
    assert executor.stderr_outputs(done.notebook) == []  # no warning, no log line
    if check is not None:
        check(done.probe, text, done.notebook)


@pytest.mark.parametrize("path", _notebook_params())
def test_committed_notebook_is_saved_executed(path: Path) -> None:
    """The committed file carries its outputs (readers see them without running anything), from
    one clean top-to-bottom run, without errors."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), (
        "not saved from one clean run: re-run `.venv/bin/python notebooks/execute.py`"
    )
    assert all(o["output_type"] != "error" for c in code for o in c["outputs"])
    assert any(c["outputs"] for c in code)
    stderr = [o for c in code for o in c["outputs"] if o.get("name") == "stderr"]
    assert stderr == [], f"saved with warnings or log lines: {stderr[0]['text']}"
    assert nb["metadata"]["kernelspec"]["name"] == executor.KERNEL_NAME  # the venv's kernel


def _tiny_notebook(path: Path, *sources: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def test_execute_checks_without_writing_unless_asked_to_save(tmp_path: Path) -> None:
    path = _tiny_notebook(tmp_path / "tiny.ipynb", "print(6 * 7)")
    original = path.read_bytes()
    assert executor.main([str(path)]) == 0
    assert path.read_bytes() == original  # checked, not rewritten
    assert executor.main(["--save", str(path)]) == 0
    saved = json.loads(path.read_text())
    assert "".join(saved["cells"][0]["outputs"][0]["text"]) == "42\n"
    assert saved["metadata"]["kernelspec"]["name"] == executor.KERNEL_NAME


def test_a_cell_writing_to_stderr_fails_the_run_and_is_not_saved(tmp_path: Path) -> None:
    path = _tiny_notebook(tmp_path / "noisy.ipynb", "import warnings\nwarnings.warn('noisy')")
    original = path.read_bytes()
    assert executor.main(["--save", str(path)]) == 1
    assert path.read_bytes() == original


def test_jupyter_opens_the_notebooks_on_the_venv_kernel(tmp_path: Path) -> None:
    """What `make notebook` relies on: JupyterLab and nbconvert in the venv, and the kernel that
    set-up registers (`ipykernel install --sys-prefix`) running this interpreter."""
    import subprocess

    bin_dir = Path(sys.executable).parent
    lab = subprocess.run([bin_dir / "jupyter", "lab", "--version"], capture_output=True, text=True)
    assert lab.returncode == 0 and lab.stdout.startswith("4."), lab.stderr
    specs = subprocess.run(
        [bin_dir / "jupyter", "kernelspec", "list", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = json.loads(specs)["kernelspecs"][executor.KERNEL_NAME]
    assert Path(spec["resource_dir"]).is_relative_to(Path(sys.prefix))  # inside the venv
    assert Path(spec["spec"]["argv"][0]).parent == Path(sys.executable).parent
    path = _tiny_notebook(tmp_path / "nbconvert.ipynb", "import sys\nprint(sys.prefix)")
    subprocess.run(
        [bin_dir / "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
         f"--ExecutePreprocessor.kernel_name={executor.KERNEL_NAME}", str(path)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    output = "".join(json.loads(path.read_text())["cells"][0]["outputs"][0]["text"])
    assert output.strip() == sys.prefix


def test_a_cell_error_fails_the_run(tmp_path: Path) -> None:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"),
        nbformat.v4.new_code_cell("raise RuntimeError('this cell is broken')"),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError, match="this cell is broken"):
        executor.execute(path, timeout_s=60)
