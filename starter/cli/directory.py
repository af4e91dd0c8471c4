"""`tidings user|device|prefs|template ...`: who can be notified, how, and with what."""

from __future__ import annotations

import json
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from starter.cli import _views as views
from starter.cli._runtime import connect, out, run
from tidings.errors import InvalidRequest, NotFound
from tidings.models import Channel, Platform, Preferences, QuietHours
from tidings.settings import Settings

user_app = typer.Typer(help="Add, show and list users.", no_args_is_help=True)
device_app = typer.Typer(help="Register users' push devices.", no_args_is_help=True)
prefs_app = typer.Typer(help="Set and show users' channel preferences.", no_args_is_help=True)
template_app = typer.Typer(help="Register, show and list templates.", no_args_is_help=True)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(option, f"expected key=value, got {raw!r}")
        pairs[key.strip()] = value
    return pairs


@user_app.command("add")
def user_add(
    user_id: Annotated[str, typer.Argument(help="The user's id in your application.")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number in E.164 form (+1...).")] = None,
    timezone: Annotated[str, typer.Option(help="IANA timezone, e.g. Europe/Paris.")] = "UTC",
    locale: Annotated[str, typer.Option(help="Language for templates, e.g. en, fr-CA.")] = "en",
    webhook_url: Annotated[str | None, typer.Option(help="Where webhook notifications go.")] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="An attribute as key=value (repeatable).")
    ] = None,
) -> None:
    """Create a user, or replace it with exactly these fields."""

    async def main(settings: Settings) -> None:
        fields: dict[str, Any] = {
            "id": user_id,
            "email": email,
            "phone": phone,
            "timezone": timezone,
            "locale": locale,
            "webhook_url": webhook_url,
            "attributes": _pairs(attr or [], "--attr"),
        }
        async with connect(settings) as tidings:
            saved = await tidings.upsert_user(fields)
            out().print(f"user {saved.id} saved", markup=False)

    run(main)


@user_app.command("show")
def user_show(user_id: Annotated[str, typer.Argument(help="The user's id.")]) -> None:
    """Show a user with their devices and preferences."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.get_user(user_id)
            devices = await tidings.list_devices(user_id)
            prefs = await tidings.get_preferences(user_id)
        out().print(views.user(found, devices, prefs))

    run(main)


@user_app.command("list")
def user_list(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many to show.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="How many to skip.")] = 0,
) -> None:
    """List users, ordered by id."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.list_users(limit=limit, offset=offset)
        out().print(views.users(found))

    run(main)


@device_app.command("add")
def device_add(
    user_id: Annotated[str, typer.Argument(help="The device's owner.")],
    platform: Annotated[Platform, typer.Argument(help="Push platform.")],
    token: Annotated[str, typer.Argument(help="The device token from FCM or APNs.")],
    label: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
) -> None:
    """Register a push device for a user (registering the same token again moves it)."""

    async def main(settings: Settings) -> None:
        device = {"user_id": user_id, "platform": platform, "token": token, "label": label}
        async with connect(settings) as tidings:
            saved = await tidings.add_device(device)
        out().print(f"{saved.platform.value} device added for {saved.user_id}", markup=False)

    run(main)


def _quiet_hours(value: str) -> QuietHours:
    start, sep, end = value.partition("-")
    try:
        if not sep:
            raise ValueError
        return QuietHours(start=time.fromisoformat(start.strip()), end=time.fromisoformat(end))
    except ValueError:
        raise InvalidRequest(
            "--quiet-hours", f"{value!r} is not a window like 22:00-07:00 (start and end differ)"
        ) from None


@prefs_app.command("set")
def prefs_set(
    user_id: Annotated[str, typer.Argument(help="The user whose preferences change.")],
    enable: Annotated[
        list[Channel] | None, typer.Option(help="Turn a channel on (repeatable).")
    ] = None,
    disable: Annotated[
        list[Channel] | None, typer.Option(help="Turn a channel off (repeatable).")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Apply --enable/--disable to this category only.")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Apply --enable/--disable to this template only.")
    ] = None,
    quiet_hours: Annotated[
        str | None, typer.Option(help="Daily window in the user's timezone, e.g. 22:00-07:00.")
    ] = None,
    no_quiet_hours: Annotated[bool, typer.Option(help="Remove the quiet hours.")] = False,
) -> None:
    """Change some of a user's preferences; what you do not mention stays as it was. The most
    specific switch wins: template, then category, then all notifications."""

    async def main(settings: Settings) -> None:
        if category and template:
            raise InvalidRequest("--category", "give --category or --template, not both")
        both = set(enable or []) & set(disable or [])
        if both:
            names = ", ".join(sorted(c.value for c in both))
            raise InvalidRequest("--enable", f"{names} is also in --disable")
        if quiet_hours and no_quiet_hours:
            raise InvalidRequest("--quiet-hours", "give --quiet-hours or --no-quiet-hours")
        async with connect(settings) as tidings:
            prefs = await tidings.get_preferences(user_id)
            data = prefs.model_dump()
            if category:
                scope = data["categories"].setdefault(category, {})
            elif template:
                scope = data["templates"].setdefault(template, {})
            else:
                scope = data["channels"]
            scope.update({c: True for c in enable or []})
            scope.update({c: False for c in disable or []})
            if quiet_hours:
                data["quiet_hours"] = _quiet_hours(quiet_hours).model_dump()
            if no_quiet_hours:
                data["quiet_hours"] = None
            saved = await tidings.set_preferences(Preferences.model_validate(data))
        out().print(views.preferences(saved))

    run(main)


@prefs_app.command("show")
def prefs_show(user_id: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Show a user's preferences."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            prefs = await tidings.get_preferences(user_id)
        out().print(views.preferences(prefs))

    run(main)


def load_definition(path: Path) -> dict[str, Any]:
    """A TemplateDefinition as a mapping, from a .yaml/.yml, .toml or .json file."""
    option = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidRequest(option, f"cannot read it: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            loaded = yaml.safe_load(text)
        elif suffix == ".toml":
            loaded = tomllib.loads(text)
        elif suffix == ".json":
            loaded = json.loads(text)
        else:
            raise InvalidRequest(option, "use a .yaml, .yml, .toml or .json file")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise InvalidRequest(option, f"not valid YAML: {problem}{where}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(option, f"not valid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidRequest(option, f"not valid JSON: {e}") from None
    if not isinstance(loaded, dict):
        raise InvalidRequest(option, "must hold a mapping of template fields (id, channels, ...)")
    return loaded


@template_app.command("add")
def template_add(
    path: Annotated[
        Path, typer.Argument(help="A YAML, TOML or JSON file holding a TemplateDefinition.")
    ],
) -> None:
    """Check a template (syntax, sandbox rules, a render of its sample_data) and store it as a
    new version; an unchanged template keeps its current version."""

    async def main(settings: Settings) -> None:
        definition = load_definition(path)
        async with connect(settings) as tidings:
            try:
                before: int | None = (await tidings.get_template(str(definition.get("id")))).version
            except NotFound:
                before = None
            saved = await tidings.register_template(definition)
        unchanged = before == saved.version
        state = "unchanged" if unchanged else "registered"
        out().print(f"template {saved.id} v{saved.version} {state}", markup=False)

    run(main)


@template_app.command("show")
def template_show(
    template_id: Annotated[str, typer.Argument(help="The template's id.")],
    version: Annotated[int | None, typer.Option(help="A version; the latest if left out.")] = None,
) -> None:
    """Show one version of a template with its sources."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.get_template(template_id, version)
        out().print(views.template(found))

    run(main)


@template_app.command("list")
def template_list() -> None:
    """List templates (latest version of each)."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.list_templates()
        out().print(views.templates(found))

    run(main)
