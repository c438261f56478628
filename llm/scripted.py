"""ScriptedChatModel: a deterministic TEST DOUBLE for the agents' LLM.

It recognises the mesh's three requests (new task, solve task, critique) and answers from a small
built-in catalogue, so the whole loop runs offline in seconds. Some tasks are answered wrongly on
the first attempt. The double fixes a wrong first try only when what it is shown names a failing
case of its function (a `FAILED '...name...'` line of the sandbox's feedback): being told that an
attempt failed, or how many hidden tests passed, is not enough. Sampled without feedback
(temperature > 0) it answers the entry's `sampled` answer (its first try when there is none), so
blind resampling, the loop and oracle feedback each show their own mechanics. Asked to write tests
for a function (CodeT), it answers its entry's `tests` as asserts, plus one that does not call the
function (a reader must drop it).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


@dataclass(frozen=True)
class ScriptedTask:
    """One catalogue entry: the task, its reference solution, and an optional first wrong try."""

    statement: str
    signature: str
    entry_point: str
    tests: tuple[str, ...]
    category: str
    solution: str
    first_try: str | None = None
    sampled: str | None = None


CATALOGUE: tuple[ScriptedTask, ...] = (
    ScriptedTask(
        "Return the sum of two integers.",
        "def add(a: int, b: int) -> int",
        "add",
        ("assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"),
        "math",
        "def add(a: int, b: int) -> int:\n    return a + b\n",
    ),
    ScriptedTask(
        "Reverse the order of the words in a sentence; words are separated by single spaces.",
        "def reverse_words(text: str) -> str",
        "reverse_words",
        (
            "assert reverse_words('a b c') == 'c b a'",
            "assert reverse_words('hello') == 'hello'",
            "assert reverse_words('') == ''",
        ),
        "strings",
        "def reverse_words(text: str) -> str:\n    return ' '.join(reversed(text.split(' ')))\n",
        # reverses the characters, not the words: a public test shows it
        first_try="def reverse_words(text: str) -> str:\n    return ' '.join(reversed(text))\n",
    ),
    ScriptedTask(
        "Return True if the string is a palindrome, ignoring case and non-alphanumerics.",
        "def is_palindrome(text: str) -> bool",
        "is_palindrome",
        (
            "assert is_palindrome('A man, a plan, a canal: Panama')",
            "assert not is_palindrome('abc')",
            "assert is_palindrome('')",
            "assert is_palindrome('No lemon, no melon')",
        ),
        "strings",
        "def is_palindrome(text: str) -> bool:\n"
        "    cleaned = [c.lower() for c in text if c.isalnum()]\n"
        "    return cleaned == cleaned[::-1]\n",
    ),
    ScriptedTask(
        "Merge overlapping closed intervals and return them sorted by start.",
        "def merge_intervals(intervals: list[list[int]]) -> list[list[int]]",
        "merge_intervals",
        (
            "assert merge_intervals([[1, 3], [2, 6], [8, 10]]) == [[1, 6], [8, 10]]",
            "assert merge_intervals([[1, 4], [4, 5]]) == [[1, 5]]",
            "assert merge_intervals([]) == []",
            "assert merge_intervals([[5, 6], [1, 2]]) == [[1, 2], [5, 6]]",
        ),
        "lists",
        "def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:\n"
        "    merged: list[list[int]] = []\n"
        "    for start, end in sorted(intervals):\n"
        "        if merged and start <= merged[-1][1]:\n"
        "            merged[-1][1] = max(merged[-1][1], end)\n"
        "        else:\n"
        "            merged.append([start, end])\n"
        "    return merged\n",
        first_try="def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:\n"
        "    return sorted(intervals)\n",
    ),
    ScriptedTask(
        "Convert a positive integer (1..3999) to a Roman numeral.",
        "def to_roman(n: int) -> str",
        "to_roman",
        (
            "assert to_roman(1) == 'I'",
            "assert to_roman(4) == 'IV'",
            "assert to_roman(1994) == 'MCMXCIV'",
            "assert to_roman(3999) == 'MMMCMXCIX'",
        ),
        "parsing",
        "def to_roman(n: int) -> str:\n"
        "    table = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'),\n"
        "             (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n"
        "    out = []\n"
        "    for value, symbol in table:\n"
        "        count, n = divmod(n, value)\n"
        "        out.append(symbol * count)\n"
        "    return ''.join(out)\n",
    ),
    ScriptedTask(
        "Return the n-th Fibonacci number (fib(0) = 0, fib(1) = 1) in linear time.",
        "def fib(n: int) -> int",
        "fib",
        ("assert fib(0) == 0", "assert fib(1) == 1", "assert fib(10) == 55", "assert fib(90) > 0"),
        "recursion",
        "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a\n",
        first_try="def fib(n: int) -> int:\n    a, b = 1, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a\n",
    ),
)

HUMANEVAL_ANSWERS: tuple[ScriptedTask, ...] = (
    # HumanEval/0: the first try passes the docstring examples but not the hidden tests; a
    # sample (temperature > 0) is right
    ScriptedTask(
        "HumanEval/0",
        "def has_close_elements(numbers: List[float], threshold: float) -> bool",
        "has_close_elements",
        (
            "assert has_close_elements([1.0, 2.0, 1.05], 0.1) == True",
            "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        ),
        "humaneval",
        "def has_close_elements(numbers, threshold):\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)\n"
        "               for b in numbers[i + 1:])\n",
        first_try="def has_close_elements(numbers, threshold):\n"
        "    return any(abs(a - b) < threshold for a, b in zip(numbers, numbers[1:]))\n",
        sampled="def has_close_elements(numbers, threshold):\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)\n"
        "               for b in numbers[i + 1:])\n",
    ),
    # HumanEval/2: right at once
    ScriptedTask(
        "HumanEval/2",
        "def truncate_number(number: float) -> float",
        "truncate_number",
        ("assert truncate_number(3.5) == 0.5", "assert truncate_number(1.25) == 0.25"),
        "humaneval",
        "def truncate_number(number):\n    return number % 1.0\n",
    ),
    # HumanEval/3: the first try fails a docstring example; fixed once that case is shown
    ScriptedTask(
        "HumanEval/3",
        "def below_zero(operations: List[int]) -> bool",
        "below_zero",
        ("assert below_zero([1, -2, 3]) == True", "assert below_zero([1, 2]) == False"),
        "humaneval",
        "def below_zero(operations):\n    balance = 0\n    for op in operations:\n"
        "        balance += op\n        if balance < 0:\n            return True\n"
        "    return False\n",
        first_try="def below_zero(operations):\n    return sum(operations) < 0\n",
    ),
    # HumanEval/4: deviations around the lower median, not the mean: the docstring's example
    # passes, the hidden tests fail, a count of them does not say why, no sample differs: only
    # oracle feedback (a hidden case shown) fixes it
    ScriptedTask(
        "HumanEval/4",
        "def mean_absolute_deviation(numbers: List[float]) -> float",
        "mean_absolute_deviation",
        ("assert mean_absolute_deviation([1.0, 2.0, 3.0, 4.0]) == 1.0",),
        "humaneval",
        "def mean_absolute_deviation(numbers):\n    mean = sum(numbers) / len(numbers)\n"
        "    return sum(abs(x - mean) for x in numbers) / len(numbers)\n",
        first_try="def mean_absolute_deviation(numbers):\n"
        "    middle = sorted(numbers)[len(numbers) // 2 - 1]\n"
        "    return sum(abs(x - middle) for x in numbers) / len(numbers)\n",
    ),
)

_BY_NAME = {t.entry_point: t for t in (*CATALOGUE, *HUMANEVAL_ANSWERS)}
_TASK_NUMBER = re.compile(r"Create task #(\d+) at difficulty (\d+)")
_ENTRY_POINT = re.compile(r"Implement `([A-Za-z_][A-Za-z0-9_]*)`")
_TESTS_FOR = re.compile(r"test cases for `([A-Za-z_][A-Za-z0-9_]*)`")
_COMPLETION = re.compile(
    r"self-contained Python script.*?def ([A-Za-z_][A-Za-z0-9_]*)\(", re.DOTALL
)


class ScriptedChatModel(BaseChatModel):
    """Deterministic stand-in for a chat model (TEST DOUBLE): no network, no randomness.

    Every prompt it receives is kept in `prompts_seen`, so tests can check what agents asked.
    `delay_s` (`AIMESH_SCRIPTED_DELAY_S`) makes every answer wait that long first, without using
    the CPU: a latency-bound remote endpoint, as in the scale-out benchmark.
    """

    prompts_seen: list[str] = Field(default_factory=list)
    delay_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "aimesh-scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        self.prompts_seen.append(prompt)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        text = self._answer(prompt, sampled=float(kwargs.get("temperature") or 0.0) > 0)
        prompt_tokens, completion_tokens = len(prompt) // 4, len(text) // 4
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _answer(self, prompt: str, *, sampled: bool = False) -> str:
        if match := _TASK_NUMBER.search(prompt):
            task = CATALOGUE[(int(match.group(1)) - 1) % len(CATALOGUE)]
            fields = {
                "statement": task.statement,
                "signature": task.signature,
                "entry_point": task.entry_point,
                "tests": list(task.tests),
                "category": task.category,
                "difficulty": int(match.group(2)),
            }
            return f"```json\n{json.dumps(fields, indent=2)}\n```\n\n```python\n{task.solution}```"
        if match := _TESTS_FOR.search(prompt):
            return f"```python\n{self._tests(match.group(1))}```"
        if "Findings:" in prompt:
            return "The solution is concise and passes its tests; naming is clear. Consider edge cases."
        if match := _ENTRY_POINT.search(prompt) or _COMPLETION.search(prompt):
            entry_point = match.group(1)
            shown = self.knows_the_bug(prompt, entry_point)
            return f"```python\n{self._solve(entry_point, shown=shown, sampled=sampled)}```"
        return "I can only answer the AI-Mesh agents' requests."

    def knows_the_bug(self, prompt: str, entry_point: str) -> bool:
        """Whether the prompt shows a failing case of `entry_point` (a sandbox `FAILED` line
        naming it): then the double fixes its wrong first try."""
        return any(
            line.startswith("FAILED ") and entry_point in line for line in prompt.splitlines()
        )

    @staticmethod
    def _tests(entry_point: str) -> str:
        """The asserts the double writes for `entry_point` (its entry's tests), and one that
        does not call it."""
        task = _BY_NAME.get(entry_point)
        known = task.tests if task is not None else ()
        return "".join(f"{test}\n" for test in (*known, f"assert callable({entry_point})"))

    @staticmethod
    def _solve(entry_point: str, *, shown: bool, sampled: bool) -> str:
        task = _BY_NAME.get(entry_point)
        if task is None:
            return f"def {entry_point}(*args, **kwargs):\n    raise NotImplementedError\n"
        if shown or task.first_try is None:
            return task.solution
        if sampled and task.sampled is not None:
            return task.sampled
        return task.first_try
