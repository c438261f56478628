from graph.routing import next_node
from graph.state import Attempt, MeshState, Task, apply_update
from sandbox import ExecutionResult

TASK = Task(statement="s", signature="def f(x)", entry_point="f", tests=["assert f(1)"])


def _state_with(passed: bool | None, attempts: int = 1, max_attempts: int = 3) -> MeshState:
    runs = [
        Attempt(
            number=n + 1,
            code="def f(x): return x",
            execution=None if passed is None else ExecutionResult(passed=passed),
        )
        for n in range(attempts)
    ]
    return MeshState(task=TASK, attempts=runs, max_attempts=max_attempts)


def test_sandbox_result_replaces_its_attempt_and_counters_add() -> None:
    state = apply_update(
        MeshState(task=TASK), {"attempts": [Attempt(number=1, code="x")], "tokens_used": 5}
    )
    result = ExecutionResult(passed=True, tests_passed=1, tests_total=1)
    state = apply_update(
        state,
        {
            "attempts": [state.attempts[0].model_copy(update={"execution": result})],
            "tokens_used": 2,
        },
    )
    assert len(state.attempts) == 1 and state.passed and state.tokens_used == 7


def test_routing_retries_failures_until_the_attempt_budget() -> None:
    assert next_node("sandbox", _state_with(False, attempts=1)) == "consumer"
    assert next_node("sandbox", _state_with(False, attempts=3)) == "reviewer"
    assert next_node("sandbox", _state_with(True, attempts=1)) == "reviewer"
    assert next_node("consumer", _state_with(None)) == "sandbox"
    assert next_node("reviewer", _state_with(True)) == "supervisor"
    assert next_node("supervisor", _state_with(True)) == "__end__"


def test_producer_failure_skips_to_the_audit() -> None:
    assert next_node("producer", MeshState(status="failed")) == "supervisor"
    assert next_node("producer", MeshState(task=TASK, status="solving")) == "consumer"
