"""Help text that reads as prose at any terminal width (issue 7, defect 12).

Command docstrings are wrapped by hand at 100 columns; typer's rich formatter keeps those line
breaks in the command list and then wraps again at the terminal's width, breaking sentences in
the middle of a line. Before the app is built, every command's docstring is unwrapped into
paragraphs (the formatter does the only wrapping), and its first sentence becomes the one-line
summary the command list shows.
"""

from __future__ import annotations

import inspect
import re

import typer

# A sentence ends at a full stop followed by a capital (so "e.g. `x`" does not end one), or at
# the end of the paragraph.
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s+[A-Z]|$)", re.DOTALL)


def unwrap(text: str) -> str:
    """Each paragraph (separated by a blank line) on one line; `\\b` paragraphs are verbatim."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def summary(text: str) -> str:
    """The first sentence of the first paragraph."""
    first = unwrap(text).split("\n\n")[0]
    found = _FIRST_SENTENCE.match(first)
    return found.group(1) if found else first


def as_prose(app: typer.Typer) -> typer.Typer:
    """Unwrap the help of every command and group registered on `app`, recursively."""
    for command in app.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        if text:
            command.help = unwrap(text)
            command.short_help = command.short_help or summary(text)
    for group in app.registered_groups:
        if group.help:
            group.help = unwrap(str(group.help))
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = unwrap(info.help)
            as_prose(group.typer_instance)
    if isinstance(app.info.help, str):
        app.info.help = unwrap(app.info.help)
    return app
