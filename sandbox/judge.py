"""Split a test into the calls the code under test answers and the check the host decides.

A test is split when it is `assert CHECK[, MESSAGE]`, optionally after lines `NAME = EXPR`,
imports and bare names (`candidate = add` makes `candidate` an alias of `add`). Every call of a
*subject* that is not inside another subject call is cut out: its source goes to the sandbox,
which sends back the value as plain data, and a placeholder takes its place here. A subject is
the entry point, `candidate`, an alias of them, or any name that is neither a builtin nor
defined by the job's setup (the code under test may define it). What remains (literals,
comparisons, boolean logic, arithmetic, subscripts and a few pure builtins and `math` functions,
all over plain data) is evaluated here by a small ast interpreter with size caps: the test text
is model-written, so it is never exec'd on the host. Expected values never enter the sandbox.

Anything else is not split, and is run the old way, inside the sandbox: loops and other
statements, attribute access, lambdas and comprehensions, calls of setup helpers or of other
builtins outside a subject call, a call reading a value computed from another call, and a name
passed to a call and read again here (the call may have mutated it in the sandbox).
"""

from __future__ import annotations

import ast
import builtins
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sandbox.python_ast import parse as parse_python

SUBJECT: Final = "candidate"
NOT_RUN: Final = "NotRun"  # the error type of a call the sandbox never evaluated
MESSAGE_LIMIT = 1000
MAX_INT_BITS = 1 << 16  # largest int the judge computes (values in are capped far below)
MAX_ITEMS = 1 << 20  # longest str, bytes, list or tuple the judge builds
PLAIN_TYPES: Final = frozenset(
    {int, float, bool, str, type(None), list, tuple, dict, set, frozenset, bytes, complex}
)
NUMBERS: Final = (int, float, bool, complex)
BUILTIN_NAMES: Final = frozenset(dir(builtins))


def _sum(values: Iterable[Any], /, start: Any = 0) -> Any:
    """sum() over numbers only (summing sequences is quadratic)."""
    items = [start, *values]
    if not all(type(item) in NUMBERS for item in items):
        raise TypeError("the judge sums numbers only")
    return sum(items[1:], start)


def _round(number: Any, ndigits: int | None = None) -> Any:
    """round() without the huge powers of ten a huge `ndigits` asks for."""
    if ndigits is not None and abs(ndigits) > 400:
        raise OverflowError("ndigits too large")
    return round(number, ndigits)


def _type(value: Any, /) -> type:
    """type() of one value (three arguments would build a class)."""
    return type(value)


# Callables and types the host evaluates: pure, and bounded by their (capped) arguments.
HOST_FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "abs": abs, "all": all, "any": any, "bool": bool, "chr": chr, "complex": complex,
    "dict": dict, "divmod": divmod, "float": float, "frozenset": frozenset, "int": int,
    "isinstance": isinstance, "len": len, "list": list, "max": max, "min": min, "ord": ord,
    "repr": repr, "round": _round, "set": set, "sorted": sorted, "str": str, "sum": _sum,
    "tuple": tuple, "type": _type,
}  # fmt: skip
MATH: Final[Mapping[str, Any]] = {
    name: getattr(math, name)
    for name in (
        "isclose", "fabs", "sqrt", "floor", "ceil", "trunc", "isnan", "isinf", "isfinite",
        "inf", "nan", "pi", "e", "tau",
    )
}  # fmt: skip
HOST_NODES: Final = (
    ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript,
    ast.Slice, ast.Tuple, ast.List, ast.Set, ast.Dict,
)  # fmt: skip


class Unsplittable(ValueError):
    """A test the host cannot judge on its own; the message says why."""


class Slot(ast.expr):
    """Placeholder for the value of the call the sandbox evaluated as number `index`."""

    _fields = ("index",)

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


@dataclass(frozen=True)
class Verdict:
    """The verdict on one test: passed, or the error type that failed it (NOT_RUN: none)."""

    error_type: str | None = None
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.error_type is None


@dataclass(frozen=True)
class Answer(Verdict):
    """What the sandbox said about one call: its plain value, or the error that stands for it."""

    value: Any = None


@dataclass(frozen=True)
class Plan:
    """A test split in two: the calls for the sandbox, and what the host checks with their values."""

    calls: tuple[str, ...]  # expression sources, evaluated in order in one scope per test
    bindings: dict[str, Any]  # plain values the calls read, bound before the first call
    steps: tuple[tuple[str, ast.expr], ...]  # assignments computed from the calls' values
    check: ast.expr
    message: ast.expr | str | None  # evaluated here, or the source text shown as it is


def setup_names(setup: str) -> frozenset[str]:
    """Every name the setup code may bind (anywhere in it: an over-estimate is the safe side)."""
    try:
        module = parse_python(setup)
    except SyntaxError:
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return frozenset(names)


def split(test: str, *, entry_point: str | None, setup: frozenset[str] = frozenset()) -> Plan:
    """The plan for one test; raises Unsplittable when the host cannot judge it on its own."""
    try:
        body = parse_python(test).body
    except SyntaxError as exc:
        raise Unsplittable(f"syntax error: {exc.msg}") from None
    if not body or not isinstance(last := body[-1], ast.Assert):
        raise Unsplittable("the test does not end with an assert")
    subjects = {SUBJECT} | ({entry_point} if entry_point else set())
    splitter = _Splitter(subjects, setup)
    try:
        for statement in body[:-1]:
            splitter.statement(statement)
        check = splitter.host(last.test)
        message = None if last.msg is None else splitter.message(last.msg)
    except RecursionError:
        raise Unsplittable("the test is nested too deeply") from None
    if shared := splitter.call_reads & splitter.host_reads:
        raise Unsplittable(f"{', '.join(sorted(shared))} is passed to a call and read again")
    bindings = {name: splitter.pure[name] for name in splitter.call_reads}
    return Plan(tuple(splitter.calls), bindings, tuple(splitter.steps), check, message)


def judge(plan: Plan, answers: Sequence[Answer]) -> Verdict:
    """Evaluate the plan's check with the calls' answers in place of the calls."""
    env: dict[str, Any] = dict(plan.bindings)
    try:
        for name, expr in plan.steps:
            env[name] = _evaluate(expr, env, answers)
        if _evaluate(plan.check, env, answers):
            return Verdict()
    except _Unanswered as exc:
        return Verdict(exc.answer.error_type, exc.answer.message)
    except Exception as exc:  # the check itself raised, as it would have in the sandbox
        return Verdict(type(exc).__name__, _text(exc))
    return Verdict("AssertionError", _message(plan.message, env, answers))


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Whether `value` is builtin data all the way down (exact types, bounded depth)."""
    kind = type(value)
    if kind not in PLAIN_TYPES or depth > 100:
        return False
    if kind is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    if kind in (list, tuple, set, frozenset):
        return all(_is_plain(item, depth + 1) for item in value)
    return True


class _Unanswered(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


class _Splitter:
    """Walks one test, cutting the subject calls out and checking the rest is host-evaluable."""

    def __init__(self, subjects: set[str], setup: frozenset[str]) -> None:
        self.subjects = subjects
        self.setup = setup
        self.aliases: dict[str, str] = {}  # name -> the subject it stands for
        self.opaque: set[str] = set()  # imported by the test: unknown to the judge
        self.pure: dict[str, Any] = {}  # names with values known before the run
        self.derived: set[str] = set()  # names computed from the calls' values
        self.steps: list[tuple[str, ast.expr]] = []
        self.calls: list[str] = []
        self.call_reads: set[str] = set()
        self.host_reads: set[str] = set()
        self.cutting = True

    def statement(self, node: ast.stmt) -> None:
        """One line before the assert: an assignment, an alias, an import or a bare name."""
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {(a.asname or a.name).split(".")[0] for a in node.names}
            self._bind(names)
            self.opaque |= names
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.Name):
            pass  # a docstring or a bare name (`print`): nothing happens
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(target := node.targets[0], ast.Name)
        ):
            self._assign(target.id, node.value)
        else:
            raise Unsplittable(f"a {type(node).__name__} statement")

    def _assign(self, name: str, value: ast.expr) -> None:
        if isinstance(value, ast.Name) and self._is_subject(value.id):
            if name in self.pure.keys() | self.derived | self.opaque:
                raise Unsplittable(f"{name} is bound twice")
            self.aliases[name] = self.aliases.get(value.id, value.id)
            return
        self._bind({name})
        calls_before = len(self.calls)
        expr = self.host(value)
        if len(self.calls) > calls_before or self._reads(expr) & self.derived:
            self.steps.append((name, expr))
            self.derived.add(name)
            return
        try:
            result = _evaluate(expr, self.pure, ())
        except Exception as exc:
            raise Unsplittable(f"{name} = ... raised {type(exc).__name__}") from None
        if not _is_plain(result):
            raise Unsplittable(f"{name} is not plain data")
        self.pure[name] = result

    def _bind(self, names: set[str]) -> None:
        known = self.pure.keys() | self.derived | self.opaque | self.aliases.keys()
        if names & known or names & self.subjects:
            raise Unsplittable(f"{', '.join(sorted(names))} is bound twice or shadows the code")

    def _is_subject(self, name: str) -> bool:
        if name in self.aliases or name in self.subjects:
            return True
        host_known = self.pure.keys() | self.derived | self.opaque | self.setup
        return name not in host_known and name not in HOST_FUNCTIONS and name not in BUILTIN_NAMES

    def message(self, node: ast.expr) -> ast.expr | str:
        """The assert's message: evaluated here if it needs no call, else its source text."""
        self.cutting = False
        try:
            return self.host(node)
        except Unsplittable:
            return ast.unparse(node)
        finally:
            self.cutting = True

    def host(self, node: ast.expr) -> ast.expr:
        """The host-side copy of `node`, with subject calls cut out into Slots."""
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Attribute):
            self._math(node)
            return node
        if isinstance(node, ast.BinOp) and _is_formatting(node):
            raise Unsplittable("% formatting")
        if not isinstance(node, HOST_NODES) or (isinstance(node, ast.Dict) and None in node.keys):
            raise Unsplittable(f"a {type(node).__name__} expression")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
            raise Unsplittable(f"the operator {type(node.op).__name__}")
        fields: dict[str, Any] = {}
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                value = self.host(value)
            elif isinstance(value, list):
                value = [self.host(item) if isinstance(item, ast.expr) else item for item in value]
            fields[name] = value
        return type(node)(**fields)

    def _name(self, node: ast.Name) -> ast.expr:
        if node.id in self.pure or node.id in self.derived:
            self.host_reads.add(node.id)
            return node
        if node.id in HOST_FUNCTIONS and not self._is_shadowed(node.id):
            return node
        raise Unsplittable(f"the name {node.id!r} is unknown to the judge")

    def _is_shadowed(self, name: str) -> bool:
        return name in self.setup or name in self.subjects or name in self.aliases

    def _math(self, node: ast.Attribute) -> None:
        if not (
            isinstance(node.value, ast.Name)
            and node.value.id == "math"
            and node.attr in MATH
            and not self._is_shadowed("math")
            and "math" not in self.pure.keys() | self.derived
        ):
            raise Unsplittable(f"the attribute .{node.attr}")

    def _call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if isinstance(func, ast.Name) and self._is_subject(func.id):
            return self._cut(node)
        if isinstance(func, ast.Name):
            self._name(func)
        elif isinstance(func, ast.Attribute):
            self._math(func)
        else:
            raise Unsplittable("a call of a computed callable")
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise Unsplittable("* or ** arguments")
        return ast.Call(
            func=func,
            args=[self.host(arg) for arg in node.args],
            keywords=[ast.keyword(arg=k.arg, value=self.host(k.value)) for k in node.keywords],
        )

    def _cut(self, node: ast.Call) -> Slot:
        """Send the call to the sandbox; the host keeps a Slot for its value."""
        if not self.cutting:
            raise Unsplittable("a call in the message")
        reads = self._reads(node)
        if reads & (self.derived | self.opaque):
            raise Unsplittable("a call reads a value computed by another call, or an import")
        self.call_reads |= reads & self.pure.keys()
        renamed = _Renamer(self.aliases).visit(parse_python(ast.unparse(node), mode="eval"))
        self.calls.append(ast.unparse(renamed))
        return Slot(len(self.calls) - 1)

    @staticmethod
    def _reads(node: ast.AST) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_formatting(node: ast.BinOp) -> bool:
    left = node.left
    return (
        isinstance(node.op, ast.Mod) and isinstance(left, ast.Constant) and type(left.value) is str
    )


class _Renamer(ast.NodeTransformer):
    """Replaces aliases by the subject they stand for (the sandbox does not run the aliasing)."""

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = aliases

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(id=self.aliases.get(node.id, node.id), ctx=node.ctx)


def _evaluate(node: ast.expr, env: Mapping[str, Any], answers: Sequence[Answer]) -> Any:
    """Evaluate a host-side expression built by split(); Slots read the calls' answers."""

    def ev(child: ast.expr) -> Any:
        return _evaluate(child, env, answers)

    match node:
        case Slot(index=index):
            answer = answers[index]
            if answer.error_type is not None:
                raise _Unanswered(answer)
            return answer.value
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return env[name] if name in env else HOST_FUNCTIONS[name]
        case ast.Attribute(attr=attr):
            return MATH[attr]
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](ev(operand))
        case ast.BinOp(left=left, op=op, right=right):
            return _binary(op, ev(left), ev(right))
        case ast.BoolOp(op=op, values=values):
            result = ev(values[0])
            for value in values[1:]:
                if bool(result) == isinstance(op, ast.Or):
                    break
                result = ev(value)
            return result
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = ev(left)
            for test_op, comparator in zip(ops, comparators, strict=True):
                following = ev(comparator)
                if not _COMPARE[type(test_op)](current, following):
                    return False
                current = following
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return ev(body) if ev(test) else ev(orelse)
        case ast.Subscript(value=value, slice=index):
            return ev(value)[ev(index)]
        case ast.Slice(lower=lower, upper=upper, step=step):
            return slice(*(None if part is None else ev(part) for part in (lower, upper, step)))
        case ast.Tuple(elts=elts):
            return tuple(ev(elt) for elt in elts)
        case ast.List(elts=elts):
            return [ev(elt) for elt in elts]
        case ast.Set(elts=elts):
            return {ev(elt) for elt in elts}
        case ast.Dict(keys=keys, values=values):
            return {ev(k): ev(v) for k, v in zip(keys, values, strict=True) if k is not None}
        case ast.Call(func=func, args=args, keywords=keywords):
            named = {str(k.arg): ev(k.value) for k in keywords}  # split() refused `**`
            return ev(func)(*(ev(arg) for arg in args), **named)
    raise TypeError(f"the judge cannot evaluate {type(node).__name__}")


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    """A binary operation, refused when its result would be huge."""
    if type(left) is int and type(right) is int:
        bits = left.bit_length(), right.bit_length()
        too_big = {
            ast.Pow: right > 0 and abs(left) > 1 and right * bits[0] > MAX_INT_BITS,
            ast.LShift: right > MAX_INT_BITS or bits[0] + right > MAX_INT_BITS,
            ast.Mult: bits[0] + bits[1] > MAX_INT_BITS,
        }.get(type(op), False)
        if too_big:
            raise OverflowError("integer result too large for the judge")
    if isinstance(op, ast.Mult | ast.Add):
        sizes = [
            len(side) for side in (left, right) if isinstance(side, str | bytes | list | tuple)
        ]
        counts = [side for side in (left, right) if type(side) in (int, bool)]
        size = sizes[0] * counts[0] if len(sizes) == 1 and counts else sum(sizes)
        if size > MAX_ITEMS:
            raise MemoryError("sequence too long for the judge")
    if isinstance(op, ast.Mod) and isinstance(left, str | bytes):
        raise TypeError("the judge does not evaluate % formatting")
    return _BINARY[type(op)](left, right)


def _message(
    message: ast.expr | str | None, env: Mapping[str, Any], answers: Sequence[Answer]
) -> str:
    if message is None or isinstance(message, str):
        return message or ""
    try:
        return _text(_evaluate(message, env, answers))
    except Exception:
        return ast.unparse(message)


def _text(value: object) -> str:
    try:
        return str(value)[:MESSAGE_LIMIT]
    except Exception:
        return ""


_UNARY: Final[Mapping[type[ast.unaryop], Callable[[Any], Any]]] = {
    ast.Not: lambda a: not a, ast.USub: lambda a: -a, ast.UAdd: lambda a: +a,
    ast.Invert: lambda a: ~a,
}  # fmt: skip
_BINARY: Final[Mapping[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b, ast.Pow: lambda a, b: a**b,
    ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b,
    ast.BitXor: lambda a, b: a ^ b,
}  # fmt: skip
_COMPARE: Final[Mapping[type[ast.cmpop], Callable[[Any, Any], bool]]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
