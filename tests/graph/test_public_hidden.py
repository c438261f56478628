"""Public and hidden tests: what a retry may see, and where each kind comes from."""

from __future__ import annotations

from pydantic import SecretStr

from foundation.settings import MemorySettings, Settings
from graph.datasets import docstring_examples, humaneval_tasks
from graph.routing import ROUTES, next_node, topic_for_transition
from graph.state import Attempt, MeshState, Task
from nodes.producer import with_hidden_tests
from sandbox import ExecutionResult, TestFailure

HIDDEN = "assert secret(12345) == 67890"


def _failed(test: str, error: str = "AssertionError") -> ExecutionResult:
    return ExecutionResult(
        passed=False,
        tests_passed=1,
        tests_total=2,
        failures=[TestFailure(test=test, error_type=error, message="12345 67890")],
    )


def test_a_retry_sees_public_failures_and_only_counts_of_hidden_ones() -> None:
    public = _failed("assert secret(1) == 2")
    attempt = Attempt(number=1, code="", execution=_failed(HIDDEN), hidden=True, public=public)
    shown = attempt.feedback()
    assert "assert secret(1) == 2" in shown
    assert "Hidden tests: 1/2 passed; failures: AssertionError." in shown
    assert "12345" not in shown.replace(public.feedback(), "")
    alone = Attempt(number=1, code="", execution=_failed(HIDDEN), hidden=True)
    assert "12345" not in alone.feedback() and "No public tests." in alone.feedback()


def test_an_attempts_test_counts_keep_public_and_hidden_apart() -> None:
    public = ExecutionResult(passed=True, tests_passed=2, tests_total=2)
    hidden = ExecutionResult(passed=True, tests_passed=1, tests_total=1)
    attempt = Attempt(number=1, code="", execution=hidden, hidden=True, public=public)
    assert attempt.test_counts() == "2/2 public, 1/1 hidden"
    assert Attempt(number=1, code="", execution=hidden, hidden=True).test_counts() == "1/1 hidden"
    nothing_hidden = Attempt(number=1, code="", execution=_failed("assert f(1) == 2"))
    assert nothing_hidden.test_counts() == "1/2 public"
    assert Attempt(number=1, code="").test_counts() == ""


def test_public_feedback_shows_nothing_of_hidden_tests_and_oracle_feedback_everything() -> None:
    public = _failed("assert secret(1) == 2")
    attempt = Attempt(number=1, code="", execution=_failed(HIDDEN), hidden=True, public=public)
    only_public = attempt.feedback("public")
    assert only_public == public.feedback() and "Hidden" not in only_public
    assert HIDDEN in attempt.feedback("oracle")  # oracle feedback: the hidden case itself
    passing = ExecutionResult(passed=True, tests_passed=2, tests_total=2)
    judged = Attempt(number=1, code="", execution=_failed(HIDDEN), hidden=True, public=passing)
    assert judged.public_passed and judged.public_score == 2 and not attempt.public_passed


def test_the_public_loop_stops_and_submits_on_public_tests_only() -> None:
    task = Task(
        statement="s", signature="def f()", entry_point="f", tests=["t"], hidden_tests=[HIDDEN]
    )
    passing = ExecutionResult(passed=True, tests_passed=1, tests_total=1)
    hidden_pass = ExecutionResult(passed=True, tests_passed=2, tests_total=2)
    first = Attempt(number=1, code="a", execution=hidden_pass, hidden=True, public=_failed("t"))
    second = Attempt(number=2, code="b", execution=_failed(HIDDEN), hidden=True, public=passing)
    state = MeshState(task=task, feedback="public", attempts=[first], max_attempts=3)
    # the hidden tests pass but the public one fails: the public loop retries
    assert next_node("sandbox", state) == "consumer"
    state = MeshState(task=task, feedback="public", attempts=[first, second], max_attempts=3)
    assert next_node("sandbox", state) == "reviewer"  # public tests pass: stop
    assert state.submitted == second and not state.passed  # submitted on public, judged hidden
    exhausted = MeshState(task=task, feedback="public", attempts=[first], max_attempts=1)
    assert exhausted.submitted == first and exhausted.passed


def test_with_written_tests_the_public_loop_draws_every_attempt_and_codet_submits() -> None:
    task = Task(
        statement="s", signature="def f()", entry_point="f", tests=[], hidden_tests=[HIDDEN]
    )
    loads = ExecutionResult(passed=True)  # an empty public run: the code loads
    hidden_pass = ExecutionResult(passed=True, tests_passed=1, tests_total=1)

    def attempt(number: int, written: list[int], passed: bool) -> Attempt:
        verdict = hidden_pass if passed else _failed(HIDDEN)
        return Attempt(
            number=number, code=f"c{number}", execution=verdict, hidden=True, public=loads,
            written_passed=written,
        )  # fmt: skip

    first, second = attempt(1, [0], False), attempt(2, [0, 1], True)
    state = MeshState(
        task=task, feedback="public", attempts=[first], max_attempts=3, written_tests=["a", "b"]
    )
    assert next_node("sandbox", state) == "consumer"  # it loads, yet CodeT wants every attempt
    full = state.model_copy(update={"attempts": [first, second, attempt(3, [0, 1], True)]})
    assert next_node("sandbox", full) == "reviewer"
    # groups by tests passed: {0} 1 x 1, {0, 1} 2 x 2: the earliest of the larger group
    assert full.submitted == second and full.passed
    # without written tests, the first answer that loads is submitted and the loop stops
    plain = state.model_copy(update={"written_tests": None})
    assert next_node("sandbox", plain) == "reviewer" and plain.submitted == first


def test_humaneval_examples_are_public_and_check_is_hidden() -> None:
    tasks = {t.task_id: t for t in humaneval_tasks()}
    truncate = tasks["HumanEval-2"]
    assert truncate.tests == ["assert truncate_number(3.5) == 0.5"]
    assert truncate.hidden_tests and truncate.verdict_tests == truncate.hidden_tests
    assert not set(truncate.tests) & set(truncate.hidden_tests)
    assert sum(1 for t in tasks.values() if t.tests) >= 60
    assert (
        docstring_examples('def f(x):\n    """\n    >>> f(1)\n    not python\n    """\n', "f") == []
    )


def test_the_producer_hides_every_other_test() -> None:
    task = Task(statement="s", signature="def f(x)", entry_point="f", tests=list("abcde"))
    split = with_hidden_tests(task)
    assert split.tests == ["a", "c", "e"] and split.hidden_tests == ["b", "d"]
    assert sorted(split.all_tests) == list("abcde")


def test_settings_travel_whole_to_worker_processes() -> None:
    settings = Settings(
        llm="scripted",
        llm_api_key=SecretStr("k"),
        memory=MemorySettings(backend="chroma", chroma_port=9999),
    )
    back = Settings.from_wire(settings.to_wire())
    assert back == settings
    assert back.llm_api_key is not None and back.llm_api_key.get_secret_value() == "k"


def test_the_routing_table_gives_edges_topics_and_successors() -> None:
    state = MeshState()
    assert next_node("consumer", state) == "sandbox"
    assert next_node("supervisor", state) == "__end__"
    assert topic_for_transition("__end__") == "ai_reports"
    assert [route.input_topic for route in ROUTES.values()] == [
        "ai_requests", "ai_topic", "ai_solutions", "ai_verified_solutions", "ai_reviews",
    ]  # fmt: skip
