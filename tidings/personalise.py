"""What every template can use besides its request data: the user, a greeting, and locale-aware
formatting of dates, numbers and money (Babel).

    {{ user.id }} {{ user.email }} {{ user.phone }} {{ user.timezone }} {{ user.locale }}
    {{ user.attributes.plan }}                      the user's attributes, by name
    {{ greeting }}  "Good evening" / "Guten Abend" / "Bonsoir" / "Buenas noches"
    {{ time_of_day }}  morning (05:00-11:59), afternoon (12:00-17:59) or evening, in the
                       user's timezone at the moment the channel is rendered for sending
    {{ order.placed | format_date }}  {{ format_date(order.placed, "long") }}
    {{ order.placed | format_datetime("short") }}   in the user's timezone
    {{ total | format_number }}  {{ total | format_currency("EUR") }}

Dates may be ISO 8601 strings (request data is JSON), dates or datetimes; the formats are Babel's
("short", "medium", "long", "full" or a CLDR pattern). Greetings exist for en, de, fr and es;
other languages get the English ones.

A request's data takes precedence over these names, so templates that already passed their own
`user` or `greeting` keep working. Every other name is checked: `user.attributes.plan` for a user
without that attribute is an error naming `user.attributes.plan`, at registration (against the
sample user below, or `sample_data["user"]`) and when a request is checked, never a blank.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError, dates, numbers

from tidings.models import User

# Registration renders at this instant when nothing else is given: a Monday morning, UTC.
SAMPLE_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SAMPLE_USER = User(id="sample-user", email="sample@example.com")

GREETINGS: dict[str, dict[str, str]] = {
    "en": {"morning": "Good morning", "afternoon": "Good afternoon", "evening": "Good evening"},
    "de": {"morning": "Guten Morgen", "afternoon": "Guten Tag", "evening": "Guten Abend"},
    "fr": {"morning": "Bonjour", "afternoon": "Bonjour", "evening": "Bonsoir"},
    "es": {"morning": "Buenos días", "afternoon": "Buenas tardes", "evening": "Buenas noches"},
}
NAMES = frozenset({"user", "greeting", "time_of_day"})


class Named(dict[str, Any]):
    """A mapping that knows its path in the template, so a missing key is reported as
    `user.attributes.plan` rather than "'dict object' has no attribute 'plan'". The path is an
    underscore attribute: the sandbox keeps templates from reading it."""

    _tidings_path: str

    def __init__(self, path: str, values: dict[str, Any]) -> None:
        super().__init__(values)
        self._tidings_path = path


def path_of(obj: Any) -> str | None:
    return obj._tidings_path if isinstance(obj, Named) else None


def user_context(user: User | dict[str, Any]) -> Named:
    """The `user` a template sees: profile fields and attributes, never endpoints or tokens
    (webhook and Slack URLs are secrets). A dict (`sample_data["user"]`) is taken as is."""
    if isinstance(user, dict):
        values = dict(user)
    else:
        values = {
            "id": user.id,
            "email": user.email,
            "phone": user.phone,
            "timezone": user.timezone,
            "locale": user.locale,
            "attributes": dict(user.attributes),
        }
    attributes = values.get("attributes")
    if isinstance(attributes, dict):
        values["attributes"] = Named("user.attributes", attributes)
    return Named("user", values)


def language(locale: str | None) -> str:
    return (locale or "en").replace("_", "-").split("-", 1)[0].lower()


def time_of_day(local: datetime) -> str:
    if 5 <= local.hour < 12:
        return "morning"
    return "afternoon" if 12 <= local.hour < 18 else "evening"


def greeting(locale: str | None, local: datetime) -> str:
    return GREETINGS.get(language(locale), GREETINGS["en"])[time_of_day(local)]


# --- formatting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Formatting:
    locale: Locale
    zone: ZoneInfo


_current: ContextVar[_Formatting | None] = ContextVar("tidings_formatting", default=None)


@functools.lru_cache(maxsize=256)
def babel_locale(locale: str | None) -> Locale:
    """The Babel locale for a user's locale tag ("fr-CA", "pt_BR", "de"); English when Babel
    knows neither the tag nor its language."""
    tag = (locale or "en").replace("-", "_")
    for candidate in (tag, language(tag), "en"):
        try:
            found = Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
        # Load the CLDR data now, outside any render's time budget (it is read lazily).
        found.number_symbols, found.date_formats, found.currency_formats  # noqa: B018
        return found
    raise LookupError("Babel has no English locale data")  # a broken install, never input


@contextmanager
def formatting(locale: str | None, timezone: str) -> Iterator[None]:
    """The locale and timezone the format_* helpers use for everything rendered inside."""
    token = _current.set(_Formatting(babel_locale(locale), ZoneInfo(timezone)))
    try:
        yield
    finally:
        _current.reset(token)


def _settings() -> _Formatting:
    current = _current.get()
    return current if current is not None else _Formatting(babel_locale("en"), ZoneInfo("UTC"))


def _when(value: Any) -> date | datetime:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"not a date or an ISO 8601 date/time: {value!r}")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
    return value


def format_date(value: Any, format: str = "medium") -> str:
    """A date (or a datetime's date in the user's timezone) in the user's locale."""
    s = _settings()
    when = _when(value)
    if isinstance(when, datetime) and when.tzinfo is not None:
        when = when.astimezone(s.zone)
    return dates.format_date(when, format=format, locale=s.locale)


def format_datetime(value: Any, format: str = "medium") -> str:
    """A date and time in the user's locale and timezone (naive times are taken as UTC)."""
    s = _settings()
    when = _when(value)
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return dates.format_datetime(when, format=format, tzinfo=s.zone, locale=s.locale)


def format_number(value: Any) -> str:
    return numbers.format_decimal(_number(value), locale=_settings().locale)


def format_currency(value: Any, currency: str) -> str:
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return numbers.format_currency(_number(value), currency.upper(), locale=_settings().locale)


HELPERS = {
    "format_date": format_date,
    "format_datetime": format_datetime,
    "format_number": format_number,
    "format_currency": format_currency,
}


def context(
    data: dict[str, Any], *, user: User | None, at: datetime | None, locale: str | None
) -> dict[str, Any]:
    """The names a render sees: the personal ones, then the request's data over them.
    Without a user (registration) the sample user stands in, or `data["user"]` when given."""
    profile = user or SAMPLE_USER
    local = (at or SAMPLE_AT).astimezone(ZoneInfo(profile.timezone))
    names: dict[str, Any] = {
        "user": user_context(profile),
        "greeting": greeting(locale or profile.locale, local),
        "time_of_day": time_of_day(local),
    }
    names.update(data)
    if isinstance(names["user"], dict) and not isinstance(names["user"], Named):
        names["user"] = user_context(names["user"])
    return names
