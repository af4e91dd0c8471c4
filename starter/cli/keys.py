"""`tidings api-key create|list|revoke`: the keys HTTP callers present (`Authorization: Bearer`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from starter.cli import _views as views
from starter.cli._runtime import connect, out, run
from tidings.api_keys import Scope
from tidings.settings import Settings

api_key_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@api_key_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. billing-service.")],
    scope: Annotated[
        list[Scope],
        typer.Option(help="send, read or admin (repeatable); admin may do everything."),
    ],
) -> None:
    """Create a key and print it once: it is stored only as a hash and cannot be shown again."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            created = await tidings.create_api_key(name, scope)
        scopes = ", ".join(s.value for s in created.api_key.scopes)
        typer.echo(created.key)
        out().print(
            f"API key {created.api_key.id} ({created.api_key.name}: {scopes}) created;"
            " the line above is the key, shown this once",
            markup=False,
        )

    run(main)


@api_key_app.command("list")
def list_keys() -> None:
    """List keys by id, name and scopes (never the keys themselves)."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            keys = await tidings.list_api_keys()
        table = Table(title=f"{len(keys)} API keys", title_justify="left")
        for column in ("id", "name", "scopes", "created", "revoked"):
            table.add_column(column)
        for key in keys:
            table.add_row(
                key.id,
                Text(key.name),  # as typed, never parsed as markup
                ",".join(s.value for s in key.scopes),
                views.when(key.created_at),
                views.when(key.revoked_at) if key.revoked_at else "",
            )
        out().print(table)

    run(main)


@api_key_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `list`).")]) -> None:
    """Revoke a key: every API process refuses it from its next request."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            await tidings.revoke_api_key(key_id)
        out().print(f"API key {key_id} revoked", markup=False)

    run(main)
