"""The host's half of the protocol, without a sandbox: splitting, judging, decoding values."""

from __future__ import annotations

import json
import math

import pytest

from sandbox.harness import NotPlain, encode
from sandbox.judge import Answer, Unsplittable, judge, setup_names, split
from sandbox.protocol import decode_value


def verdict(test: str, *values: object, entry_point: str | None = "add") -> tuple[bool, str | None]:
    plan = split(test, entry_point=entry_point)
    result = judge(plan, [Answer(value=value) for value in values])
    return result.passed, result.error_type


def test_only_the_calls_go_to_the_sandbox() -> None:
    plan = split(
        "candidate = add\nassert abs(candidate(1.5, 2) - 3.5) < 1e-6, 'close'", entry_point="add"
    )
    assert plan.calls == ("add(1.5, 2)",)
    assert "3.5" not in repr(plan.calls) + repr(plan.bindings)
    assert judge(plan, [Answer(value=3.5)]).passed
    failed = judge(plan, [Answer(value=3.0)])
    assert (failed.error_type, failed.message) == ("AssertionError", "close")


def test_calls_and_values_map_one_to_one() -> None:
    assert verdict("assert add(1, 2) == 3 and add(2, 2) == 4", 3, 4) == (True, None)
    assert verdict("assert add(1, 2) == 3 and add(2, 2) == 4", 3, 5) == (False, "AssertionError")
    assert verdict("assert math.isclose(add(0.1, 0.2), 0.3)", 0.30000000000000004)[0]
    assert verdict("assert sorted(add([2], [1])) == [1, 2]", [2, 1])[0]
    assert verdict("assert isinstance(add(1, 1), int)", True)[0]  # as Python says
    assert verdict("assert add(1, 1) is None", None)[0]
    assert verdict("assert add('a', 'b')[::-1] == 'ba'", "ab")[0]
    assert verdict("assert add(1, 2)[5] == 1", [1]) == (False, "IndexError")


def test_a_call_that_raised_fails_only_if_its_value_is_read() -> None:
    plan = split("assert True or add(1, 2)", entry_point="add")
    assert judge(plan, [Answer(error_type="ZeroDivisionError")]).passed
    plan = split("assert add(1, 2) == 3", entry_point="add")
    assert judge(plan, [Answer(error_type="ZeroDivisionError", message="boom")]).error_type == (
        "ZeroDivisionError"
    )


def test_helpers_of_the_code_are_subjects_and_builtins_are_not() -> None:
    # poly is defined by the code under test: the whole call goes to the sandbox.
    plan = split("assert math.fabs(poly(xs, candidate(xs))) < 1e-4", entry_point="find_zero")
    assert plan.calls == ("poly(xs, candidate(xs))",)
    # An entry point named like a builtin is still the code's.
    assert split("assert sorted([3, 1]) == [1, 3]", entry_point="sorted").calls == (
        "sorted([3, 1])",
    )


def test_prelude_values_are_bound_and_aliases_followed() -> None:
    plan = split("f = add\nxs = [1, 2]\ny = f(xs)\nassert y == 3", entry_point="add")
    assert plan.calls == ("add(xs)",) and plan.bindings == {"xs": [1, 2]}
    assert judge(plan, [Answer(value=3)]).passed


@pytest.mark.parametrize(
    ("test", "reason"),
    [
        ("for x in range(3):\n    assert add(x, 0) == x", "does not end with an assert"),
        ("assert add(1, 2) == expected", "unknown to the judge"),  # e.g. a setup constant
        ("assert reference(1) == add(1)", "'reference' is unknown"),  # a setup helper
        ("assert list(map(add, [1])) == [1]", "'map' is unknown"),
        ("assert add(1).real == 1", "attribute"),
        ("assert [add(x) for x in [1]] == [1]", "ListComp"),
        ("xs = [3, 1]\nadd(xs)\nassert xs == [1, 3]", "Expr statement"),
        ("xs = [3, 1]\nassert add(xs) is None and xs == [1, 3]", "passed to a call and read"),
        ("y = add(1)\nassert add(y) == 2", "computed by another call"),
        ("assert __import__('os').system('true') == 0", "attribute .system"),
        ("assert '%s' % add(1) == '1'", "% formatting"),
    ],
)
def test_what_is_not_split(test: str, reason: str) -> None:
    with pytest.raises(Unsplittable, match=reason):
        split(test, entry_point="add", setup=setup_names("expected = 3\ndef reference(x): ..."))


def test_the_judge_refuses_huge_results() -> None:
    for test in (
        "assert add(1) ** 10 ** 9 > 0",
        "assert [0] * add(1) == []",
        "assert round(add(1), -10 ** 9) == 0",
    ):
        passed, error = verdict(test, 10**7)
        assert not passed and error in {"OverflowError", "MemoryError"}


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**40),
        1.5,
        math.inf,
        'é\n"',
        b"\x00\xff",
        2 + 3j,
        [1, (2, 3)],
        {1: {"a": frozenset({2})}},
        {(1, 2)},
    ],
)
def test_values_travel_exactly(value: object) -> None:
    decoded = decode_value(json.loads(encode(value)))
    assert decoded == value and type(decoded) is type(value)


def test_nan_travels_as_a_float() -> None:
    assert math.isnan(decode_value(json.loads(encode(math.nan))))


@pytest.mark.parametrize(
    "make", [lambda: type("X", (int,), {})(1), lambda: [type("L", (list,), {})()], lambda: object()]
)
def test_non_plain_values_are_refused_in_the_sandbox(make: object) -> None:
    with pytest.raises(NotPlain) as refused:
        encode(make())  # type: ignore[operator]
    assert refused.value.args[0] == "NonPlainValue"


def test_deep_or_huge_values_are_refused() -> None:
    deep: list[object] = []
    for _ in range(200):
        deep = [deep]
    for value in (deep, "x" * (1 << 20), 10**5000):
        with pytest.raises(NotPlain) as refused:
            encode(value)
        assert refused.value.args[0] == "ValueTooLarge"


@pytest.mark.parametrize(
    "data", [["l"], ["x", []], ["s", [["l", []]]], ["d", [[1]]], 1.5, {"a": 1}, ["f", 1]]
)
def test_malformed_values_are_rejected_on_the_host(data: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode_value(data)
