"""The cheap optimizer: an offline bandit over the prompt versions in the registry.

Arms are the active version and the candidates of one prompt; their statistics are the rewards
recorded in the registry (live mesh runs and learning runs alike). UCB1 or Thompson sampling picks
the arm to pull next. When there are too few arms, new candidates are made without any LLM by
appending one instruction from a fixed, curated list to the active text (`propose_variants`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

from nodes.prompts import CONSUMER_SYSTEM, PRODUCER_SYSTEM
from prompt_registry.registry import PromptRegistry, PromptVersion

Policy = Literal["ucb1", "thompson"]

VARIANT_CLAUSES: dict[str, tuple[str, ...]] = {
    CONSUMER_SYSTEM: (
        "Before answering, re-read the task and handle its edge cases (empty inputs, zero, "
        "negative numbers, duplicates, ties).",
        "Follow the examples in the task's docstring exactly: same return type, order and "
        "formatting.",
        "Keep the exact function name and signature from the task, include every import you use, "
        "and return the result instead of printing it.",
        "Prefer a simple, direct standard-library solution over a clever one.",
        "Think through the algorithm step by step in a short comment inside the function, then "
        "implement it.",
    ),
    PRODUCER_SYSTEM: (
        "Make every test deterministic and independent; never compare floats with ==.",
        "Check the reference solution against each test line by line before answering.",
        "Keep the statement precise: state the input constraints and the expected output for "
        "edge cases.",
    ),
}


def propose_variants(
    registry: PromptRegistry, name: str, wanted: int, clauses: Sequence[str] | None = None
) -> list[PromptVersion]:
    """Add candidates (active text + one clause) until `name` has `wanted` open candidates or the
    clauses run out; returns the new ones. Deterministic: clauses are tried in order, and a text
    the registry already holds (whatever its status) is not proposed again."""
    clauses = VARIANT_CLAUSES.get(name, ()) if clauses is None else clauses
    active = registry.current(name)
    open_candidates = len(registry.versions(name, "candidate"))
    added: list[PromptVersion] = []
    for clause in clauses:
        if open_candidates + len(added) >= wanted:
            break
        if clause in active.text:
            continue
        text = f"{active.text}\n{clause}"
        if registry.find_text(name, text) is not None:
            continue
        prompt = registry.add_candidate(name, text, active.version, source="bandit-variant")
        added.append(registry.get(name, prompt.version))
    return added


def ucb1(arms: Sequence[PromptVersion], c: float = 1.0) -> PromptVersion:
    """UCB1 over rewards in 0..1: an unpulled arm first (oldest), else the highest
    mean + c * sqrt(2 ln N / n)."""
    if not arms:
        raise ValueError("no arms to choose from")
    for arm in arms:
        if arm.n == 0:
            return arm
    total = sum(a.n for a in arms)
    return max(arms, key=lambda a: a.mean + c * math.sqrt(2 * math.log(total) / a.n))


def thompson(arms: Sequence[PromptVersion], rng: random.Random) -> PromptVersion:
    """Thompson sampling with a Beta(1 + n*mean, 1 + n*(1-mean)) posterior per arm (rewards in
    0..1 treated as fractional successes)."""
    if not arms:
        raise ValueError("no arms to choose from")
    return max(
        arms,
        key=lambda a: rng.betavariate(1 + a.n * a.mean, 1 + a.n * max(0.0, 1 - a.mean)),
    )


def choose(
    arms: Sequence[PromptVersion], policy: Policy = "ucb1", rng: random.Random | None = None
) -> PromptVersion:
    """The arm `policy` pulls next."""
    if policy == "thompson":
        return thompson(arms, rng or random.Random(0))
    return ucb1(arms)
