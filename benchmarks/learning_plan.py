"""What a learning benchmark learns: a plan of `algorithm:prompt` steps, e.g.
`apo:consumer.system,skills:consumer.rules,skills:consumer.exemplars` (one round of each step
per learning round, in order)."""

from __future__ import annotations

import argparse
from typing import cast, get_args

from learning.learner import Algorithm
from nodes.prompts import CONSUMER_SYSTEM, PRODUCER_SYSTEM, SKILLS

Plan = list[tuple[Algorithm, str]]

PROMPTS = (CONSUMER_SYSTEM, PRODUCER_SYSTEM, *SKILLS)


def parse_plan(text: str) -> Plan:
    """`algorithm:prompt[,algorithm:prompt...]` as steps; argparse's error for a bad one."""
    steps: Plan = []
    for step in filter(None, (s.strip() for s in text.split(","))):
        algorithm, _, prompt = step.partition(":")
        if algorithm not in get_args(Algorithm) or prompt not in PROMPTS:
            raise argparse.ArgumentTypeError(
                f"{step!r}: expected algorithm:prompt with an algorithm of "
                f"{', '.join(get_args(Algorithm))} and a prompt of {', '.join(PROMPTS)}"
            )
        if (algorithm == "skills") != (prompt in SKILLS):
            raise argparse.ArgumentTypeError(f"{step!r}: skills learn {', '.join(SKILLS)} only")
        steps.append((cast(Algorithm, algorithm), prompt))
    if not steps:
        raise argparse.ArgumentTypeError("the plan has no step")
    return steps


def plan_text(plan: Plan) -> str:
    """The plan as `parse_plan` reads it."""
    return ",".join(f"{algorithm}:{prompt}" for algorithm, prompt in plan)


def add_plan_options(parser: argparse.ArgumentParser, default: str) -> None:
    """`--plan` (checked, kept as its text) and `--alpha`, the promotion gate's p."""
    parser.add_argument("--plan", type=lambda text: plan_text(parse_plan(text)), default=default)
    parser.add_argument("--alpha", type=float, default=0.05, help="promotion gate's p")
