"""The producer's request: blind without memory, steered to the least covered category with it."""

from __future__ import annotations

from nodes.prompts import TASK_CATEGORIES, least_covered, producer_request


def test_without_memory_the_request_names_no_categories() -> None:
    request = producer_request(2, 2, None)
    assert request.startswith("Create task #3 at difficulty 2")
    assert "categor" not in request.lower()


def test_with_memory_the_least_covered_category_is_asked_for() -> None:
    covered = [("strings", 4), ("math", 2), ("lists", 1)]
    request = producer_request(0, 1, covered)
    assert "strings (4), math (2), lists (1)" in request
    assert least_covered(covered) == [c for c in TASK_CATEGORIES if c not in dict(covered)][:3]
    assert f"in the category '{least_covered(covered)[0]}'" in request
    assert '"category": "dicts"' in request


def test_when_every_category_is_covered_the_rarest_come_first() -> None:
    covered = [(c, 2) for c in TASK_CATEGORIES if c != "graphs"] + [("graphs", 1)]
    assert least_covered(covered)[0] == "graphs"


def test_an_empty_memory_still_steers() -> None:
    assert "none yet" in producer_request(0, 1, [])
    assert least_covered([]) == list(TASK_CATEGORIES[:3])


def test_the_request_lists_at_most_the_twelve_most_covered_categories() -> None:
    covered = [(f"topic {n}", 30 - n) for n in range(20)]
    request = producer_request(0, 1, covered)
    assert "topic 11 (19)" in request and "topic 12" not in request
