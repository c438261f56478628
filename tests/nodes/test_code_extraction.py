from nodes.code_extraction import (
    assert_calls,
    extract_code,
    prepare_solution,
    strip_self_tests,
    with_typing_imports,
)


def test_extract_prefers_the_block_defining_the_entry_point() -> None:
    answer = "Here:\n```python\nx = 1\n```\nand\n```python\ndef f(a):\n    return a\n```\n"
    assert extract_code(answer, "f") == "def f(a):\n    return a"


def test_extract_handles_unclosed_fence_and_raw_code() -> None:
    assert extract_code("```python\ndef g():\n    return 2\n", "g").startswith("def g()")
    assert extract_code("def h():\n    return 3", "h") == "def h():\n    return 3"


def test_self_tests_are_stripped_but_definitions_and_constants_kept() -> None:
    code = (
        "import math\nLIMIT = 10\nSEEN = set()\ndef f(x):\n    return x\n"
        "print(f(2))\nassert f(1) == 1\nif __name__ == '__main__':\n    f(3)\nresult = f(4)\n"
    )
    stripped = strip_self_tests(code)
    assert "print" not in stripped and "assert" not in stripped and "__main__" not in stripped
    assert "result" not in stripped
    for kept in ("import math", "LIMIT = 10", "SEEN = set()", "def f(x)"):
        assert kept in stripped


def test_syntax_errors_are_left_for_the_sandbox_to_report() -> None:
    assert strip_self_tests("def f(:\n  pass") == "def f(:\n  pass"


def test_prepare_adds_the_prompts_imports_and_missing_helpers() -> None:
    prompt = "from typing import List\n\ndef helper(x):\n    return x\n\ndef f(xs: List[int]):\n    '''doc'''\n"
    code = prepare_solution("```python\ndef f(xs):\n    return helper(xs)\n```", "f", prompt)
    assert code.startswith("from typing import List")
    assert "def helper(x)" in code
    assert code.count("def f(") == 1


def test_typing_names_used_without_import_are_imported() -> None:
    code = "def f(xs: List[int]) -> Optional[Dict[str, int]]:\n    return None"
    assert with_typing_imports(code) == f"from typing import Dict, List, Optional\n\n{code}"


def test_typing_imports_leave_imported_defined_and_broken_code_alone() -> None:
    imported = "from typing import List\ndef f(xs: List[int]) -> int:\n    return 0"
    defined = "class Set:\n    pass\ndef f() -> Set:\n    return Set()"
    broken = "def f(xs: List[int]:"
    for code in (imported, defined, broken):
        assert with_typing_imports(code) == code


def test_written_tests_are_the_asserts_calling_the_function() -> None:
    answer = (
        "Tests:\n```python\nassert f(1) == 2\nassert f(1) == 2\nassert g(1) == 2\n"
        "assert f(2) == (\nx = f(3)\nassert   f(3)==4\n```\nassert f(9) == 9 outside"
    )
    # a block that does not parse is read line by line; duplicates, other calls and statements
    # that are not asserts are dropped; the raw text outside a block is not read
    assert assert_calls(answer, "f", 10) == ["assert f(1) == 2", "assert f(3) == 4"]
    assert assert_calls(answer, "f", 1) == ["assert f(1) == 2"]
    assert assert_calls("assert f(0) == 0\nassert True", "f", 10) == ["assert f(0) == 0"]
    in_a_function = "```python\ndef test_f():\n    assert f(5) == 6\n```"
    assert assert_calls(in_a_function, "f", 10) == ["assert f(5) == 6"]
