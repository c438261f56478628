"""The producer's request: blind without memory, steered to a least covered category with it."""

from __future__ import annotations

from nodes.prompts import TASK_CATEGORIES, next_category, producer_request


def test_without_memory_the_request_names_no_categories() -> None:
    request = producer_request(2, 2, None)
    assert request.startswith("Create task #3 at difficulty 2")
    assert "categor" not in request.lower()


def test_with_memory_a_least_covered_category_is_asked_for() -> None:
    covered = [("strings", 4), ("math", 2), ("lists", 1)]
    request = producer_request(0, 1, covered)
    assert "strings (4), math (2), lists (1)" in request
    assert next_category(covered, 0) == "dicts"  # the first category memory has not seen
    assert "in the category 'dicts'" in request and '"category": "dicts"' in request


def test_when_every_category_is_covered_the_rarest_comes_first() -> None:
    covered = [(c, 2) for c in TASK_CATEGORIES if c != "graphs"] + [("graphs", 1)]
    assert next_category(covered, 0) == next_category(covered, 7) == "graphs"


def test_a_category_never_covered_does_not_hold_up_the_others() -> None:
    # The 0.5B fails at "graphs" task after task: the next tasks rotate through the rarest.
    covered = [(c, 1) for c in TASK_CATEGORIES[:10]]
    asked = [next_category(covered, index) for index in range(11, 14)]
    assert asked == [TASK_CATEGORIES[10 + (i % 10)] for i in range(11, 14)]
    assert len(set(asked)) == 3


def test_an_empty_memory_still_steers() -> None:
    assert "none yet" in producer_request(0, 1, [])
    assert next_category([], 0) == TASK_CATEGORIES[0]


def test_the_request_lists_at_most_the_twelve_most_covered_categories() -> None:
    covered = [(f"topic {n}", 30 - n) for n in range(20)]
    request = producer_request(0, 1, covered)
    assert "topic 11 (19)" in request and "topic 12" not in request
