"""`tidings --help` reads as prose at any width (issue 7, defect 12): a line of help text ends
early only where the next word would not fit, never at a line break left in a docstring."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from starter.cli import app
from starter.cli._prose import summary, unwrap

WIDTHS = (60, 200)
BAR = "│"


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # typer builds its commands on a click of its own: duck-typed, not click.Group.
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


PATHS = command_paths(typer.main.get_command(app))


def render_help(path: tuple[str, ...], width: int) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


def _first_word(text: str) -> str:
    """What the formatter keeps together: a word, or a whole `[default: ...]` annotation."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        return text[: text.index("]") + 1]
    return text.split()[0] if text else ""


def _panel_breaks(panel: list[str]) -> list[str]:
    """Early breaks in a panel's cells. A cell continues on the next line when that line is
    blank up to the cell's column; the column is as wide as its widest line."""
    bodies = [line[line.index(BAR) + 1 : line.rindex(BAR)] for line in panel]
    found = []
    for a, b in itertools.pairwise(bodies):
        start = len(b) - len(b.lstrip())
        # A new row starts right after the border's padding; a continuation further right.
        if start <= 1 or start >= len(a) or a[start - 1] != " " or a[start] == " ":
            continue
        column = [x[start:].rstrip() for x in bodies if x[start - 1] == " " and x[start] != " "]
        room = max(len(text.split("  ")[0]) for text in column)
        text = a[start:].rstrip()
        if "  " in text or text.endswith("…") or b.lstrip().startswith("["):
            # Another column follows, the cell was cut short on purpose, or typer put its
            # `[required]` / `[default: ...]` annotation on a line of its own.
            continue
        if len(text) + 1 + len(_first_word(b)) <= room:
            found.append(f"{a}\n{b}")
    return found


def early_breaks(output: str, width: int) -> list[str]:
    """Pairs of lines where the first ended although the next one's first word would have fit
    after it: the mark of a hard line break inside a sentence."""
    found: list[str] = []
    lines = output.splitlines()
    panel: list[str] | None = None
    for a, b in itertools.pairwise(["", *lines]):
        if b.lstrip().startswith("╭"):
            panel = []
        elif b.lstrip().startswith("╰") and panel is not None:
            found += _panel_breaks(panel)
            panel = None
        elif panel is not None:
            panel.append(b)
        elif (
            a.strip()
            and b.strip()
            and not a.lstrip().startswith("Usage")
            # The description above the panels, padded by one column on each side.
            and len(a.strip()) + 1 + len(_first_word(b)) <= width - 2
        ):
            found.append(f"{a}\n{b}")
    return found


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tidings")
def test_help_lines_break_only_where_the_width_ends(path: tuple[str, ...], width: int) -> None:
    output = render_help(path, width)
    assert early_breaks(output, width) == [], output


def test_every_command_summary_is_one_intact_line_at_width_200() -> None:
    output = render_help((), 200)
    for info in app.registered_commands:
        assert info.help is not None
        assert summary(info.help) in output, f"{info.name}: {summary(info.help)!r}\n{output}"


def test_unwrap_keeps_paragraphs_and_joins_lines() -> None:
    text = """First line
    goes on here.

    Second paragraph
    too."""
    assert unwrap(text) == "First line goes on here.\n\nSecond paragraph too."
    assert summary("Stop it. Then more.") == "Stop it."
