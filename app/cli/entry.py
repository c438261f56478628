"""The `aimesh` console script: `aimesh --help` printed from the command table without importing
typer (click alone costs more than the interpreter's own start); anything else runs the root app.

The text is click's plain help of the root group, laid out as click lays it out (usage, the help
paragraph, an aligned definition list per section, each command's help cut to fit the width);
a test holds it equal to what the typer app prints.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence

from app.cli.commands import COMMANDS, ROOT_HELP, VERSION_HELP

OPTIONS = (
    ("--version", VERSION_HELP),
    ("--install-completion", "Install completion for the current shell."),
    (
        "--show-completion",
        "Show completion for the current shell, to copy it or customize the installation.",
    ),
    ("--help", "Show this message and exit."),
)
"""The root's options as typer declares them (the version flag, typer's completion pair)."""
_COL_MAX = 30
_COL_SPACING = 2
_INDENT = 2


def root_help(prog: str, columns: int) -> str:
    """The root group's help as click prints it for a terminal `columns` wide."""
    width = max(min(columns, 80) - 2, 50)
    lines = [_usage(prog, width), ""]
    lines += _wrap(ROOT_HELP, width, " " * _INDENT, " " * _INDENT)
    lines += ["", "Options:", *_definitions(OPTIONS, width)]
    limit = width - 6 - max(len(name) for name in COMMANDS)
    commands = [(name, short_help(entry.help, limit)) for name, entry in COMMANDS.items()]
    lines += ["", "Commands:", *_definitions(commands, width)]
    return "\n".join(lines)


def short_help(text: str, max_length: int) -> str:
    """The first sentence if it fits, else the words that fit followed by "..." (click's
    `make_default_short_help`)."""
    words = text.split("\n\n")[0].split()
    total = 0
    index = 0
    for index, word in enumerate(words):
        total += len(word) + (index > 0)
        if total > max_length:
            break
        if word.endswith("."):
            return " ".join(words[: index + 1])
        if total == max_length and index != len(words) - 1:
            break
    else:
        return " ".join(words)
    total += len("...")
    while index > 0:
        total -= len(words[index]) + (index > 0)
        if total <= max_length:
            break
        index -= 1
    return " ".join(words[:index]) + "..."


def _usage(prog: str, width: int) -> str:
    prefix = f"Usage: {prog} "
    return "\n".join(
        _wrap("[OPTIONS] COMMAND [ARGS]...", width, prefix, " " * len(prefix))
    )  # fmt: skip


def _definitions(rows: Sequence[tuple[str, str]], width: int) -> list[str]:
    """click's `write_dl`: terms in a column, texts aligned and wrapped beside them."""
    first_col = min(max(len(term) for term, _ in rows), _COL_MAX) + _COL_SPACING
    text_width = max(width - first_col - 2, 10)
    pad = " " * (first_col + _INDENT)
    out: list[str] = []
    for term, text in rows:
        wrapped = _wrap(text, text_width, "", "")
        if len(term) <= first_col - _COL_SPACING:
            out.append(" " * _INDENT + term.ljust(first_col) + wrapped[0])
        else:
            out += [" " * _INDENT + term, pad + wrapped[0]]
        out += [pad + line for line in wrapped[1:]]
    return out


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, replace_whitespace=False
    ) or [first.rstrip()]


def terminal_columns() -> int:
    """`shutil.get_terminal_size().columns` (COLUMNS, else the terminal's, else 80), without
    importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def program_name() -> str:
    """What click calls the program: `python -m <module>` when run with -m, else argv[0]'s name."""
    package = getattr(sys.modules.get("__main__"), "__package__", None)
    if not package:
        return os.path.basename(sys.argv[0])
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return f"python -m {package}.{name}" if name != "__main__" else f"python -m {package}"


def main() -> None:
    """`aimesh`: the root help at once, or the typer app."""
    if sys.argv[1:] == ["--help"]:
        print(root_help(program_name(), terminal_columns()))
        sys.exit(0)
    from app.cli.main import main as run_app  # typer and the root group, for every other call

    run_app()


if __name__ == "__main__":
    main()
