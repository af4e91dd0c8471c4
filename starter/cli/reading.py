"""`tidings stats|mail`: how delivery is going and what the SMTP sink received (the inbox
commands are in inbox.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from starter.cli import _views as views
from starter.cli._runtime import connect, fail, load_settings, out, run
from starter.dev.maildir import list_mail, read_mail
from tidings.settings import Settings

mail_app = typer.Typer(
    help="Read what the local SMTP sink of `tidings dev` received.",
    invoke_without_command=True,
)


def stats() -> None:
    """Delivery statistics: per channel sent, delivered, failed, suppressed and success rate,
    notifications by status, and engagement."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            service = await tidings.stats()
        out().print(views.stats(service))

    run(main)


@mail_app.callback()
def mail(
    ctx: typer.Context,
    last: Annotated[int, typer.Option(min=1, help="Show only the newest N messages.")] = 50,
) -> None:
    """List the messages in <data_dir>/mail, oldest first (`tidings mail show ID` prints one)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    try:
        messages = list_mail(settings.data_dir / "mail")
    except (OSError, ValueError) as e:
        fail(f"cannot read the mail in {settings.data_dir / 'mail'}: {e}")
    out().print(views.mail_list(messages[-last:]))


@mail_app.command("show")
def mail_show(
    mail_id: Annotated[str, typer.Argument(help="A message id from `tidings mail`.")],
) -> None:
    """Print one message: its headers and its text part."""
    settings = load_settings()
    maildir = settings.data_dir / "mail"
    try:
        message = read_mail(maildir, mail_id)
    except KeyError:
        fail(f"mail {mail_id!r} not found in {maildir}")
    except (OSError, ValueError) as e:
        fail(str(e))
    out().print(views.mail(message))
