"""Personalisation in templates (tidings.personalise through tidings.rendering): the user's
profile and attributes, the greeting in the user's timezone at send time, Babel formatting per
locale, and missing attributes refused by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tidings.models import Channel, TemplateContent, TemplateDefinition, User
from tidings.rendering import TemplateError, render, validate_template


def template(text: str, **fields: object) -> TemplateDefinition:
    values: dict[str, object] = {
        "id": "t",
        "channels": [Channel.SMS],
        "content": TemplateContent(sms=text),
        **fields,
    }
    return TemplateDefinition(**values)


def sms(text: str, user: User, at: datetime, data: dict[str, object] | None = None) -> str:
    return render(
        template(text), Channel.SMS, data or {}, locale=user.locale, user=user, at=at
    ).text


ADA = User(
    id="ada",
    email="ada@example.com",
    timezone="Europe/Berlin",
    locale="de",
    attributes={"first_name": "Ada", "plan": "pro"},
)
# 17:30 UTC: evening in Berlin (18:30), afternoon in New York (12:30), night in Kolkata (23:00).
AT = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)


def test_profile_fields_and_attributes() -> None:
    text = "{{ user.id }} {{ user.email }} {{ user.attributes.first_name }} {{ user.timezone }}"
    assert sms(text, ADA, AT) == "ada ada@example.com Ada Europe/Berlin"


def test_secrets_of_the_profile_are_not_exposed() -> None:
    user = ADA.model_copy(update={"slack_webhook_url": "https://hooks.slack.com/services/T/B/X"})
    with pytest.raises(TemplateError, match=r"user\.slack_webhook_url is undefined"):
        sms("{{ user.slack_webhook_url }}", user, AT)


@pytest.mark.parametrize(
    ("locale", "timezone", "greeting"),
    [
        ("de", "Europe/Berlin", "Guten Abend"),
        ("en", "America/New_York", "Good afternoon"),
        ("fr", "Europe/Paris", "Bonsoir"),
        ("es", "Asia/Kolkata", "Buenas noches"),
        ("es-MX", "Asia/Tokyo", "Buenos días"),  # sent at 23:00 UTC: 08:00 in Tokyo
        ("pt-BR", "America/Sao_Paulo", "Good afternoon"),  # no Portuguese greetings: English
    ],
)
def test_greeting_is_for_the_users_clock_at_send_time(
    locale: str, timezone: str, greeting: str
) -> None:
    user = User(id="u", timezone=timezone, locale=locale)
    at = AT if timezone != "Asia/Tokyo" else datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 08:00
    assert sms("{{ greeting }}", user, at) == greeting


def test_time_of_day_boundaries() -> None:
    user = User(id="u", timezone="UTC")
    names = [
        sms("{{ time_of_day }}", user, datetime(2026, 12, 1, h, tzinfo=UTC))
        for h in (4, 5, 11, 12, 17, 18)
    ]
    assert names == ["evening", "morning", "morning", "afternoon", "afternoon", "evening"]


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Dec 24, 2026 | 1,234.5 | €1,234.50"),
        ("de", "24.12.2026 | 1.234,5 | 1.234,50\xa0€"),
        ("fr", "24 déc. 2026 | 1\u202f234,5 | 1\u202f234,50\xa0€"),
        ("es", "24 dic 2026 | 1.234,5 | 1.234,50\xa0€"),
    ],
)
def test_dates_numbers_and_currency_follow_the_locale(locale: str, expected: str) -> None:
    user = User(id="u", locale=locale, timezone="Europe/Berlin")
    text = (
        "{{ day | format_date }} | {{ total | format_number }}"
        " | {{ format_currency(total, 'EUR') }}"
    )
    assert sms(text, user, AT, {"day": "2026-12-24", "total": 1234.5}) == expected


def test_datetimes_are_shown_in_the_users_timezone() -> None:
    user = User(id="u", locale="en", timezone="Asia/Kolkata")
    out = sms("{{ when | format_datetime('short') }}", user, AT, {"when": "2026-12-01T17:30:00Z"})
    assert out.replace("\u202f", " ") == "12/1/26, 11:00 PM"
    # A late-evening UTC time is already the next day in Kolkata.
    out = sms("{{ format_date(when, 'short') }}", user, AT, {"when": "2026-12-01T20:00:00+00:00"})
    assert out == "12/2/26"


def test_bad_values_fail_the_render_with_the_reason() -> None:
    with pytest.raises(TemplateError, match="not a date"):
        sms("{{ x | format_date }}", ADA, AT, {"x": "soon"})
    with pytest.raises(TemplateError, match="currency"):
        sms("{{ 3 | format_currency('euro') }}", ADA, AT)
    with pytest.raises(TemplateError, match="not a number"):
        sms("{{ 'lots' | format_number }}", ADA, AT)


def test_a_missing_attribute_names_the_variable() -> None:
    with pytest.raises(TemplateError) as err:
        sms("Hi {{ user.attributes.nickname }}", ADA, AT)
    assert "user.attributes.nickname" in err.value.reason


def test_registration_refuses_a_template_reading_an_attribute_the_sample_lacks() -> None:
    t = template("Hi {{ user.attributes.first_name }}")
    with pytest.raises(TemplateError) as err:
        validate_template(t)
    assert err.value.field == "content.sms"
    assert "user.attributes.first_name is undefined" in err.value.reason


def test_registration_uses_the_sample_user_from_sample_data() -> None:
    sample = {"user": {"id": "s", "attributes": {"first_name": "Sam"}}}
    t = template("{{ greeting }} {{ user.attributes.first_name }}", sample_data=sample)
    validate_template(t)  # no exception
    missing = template("{{ user.attributes.plan }}", sample_data=sample)
    with pytest.raises(TemplateError, match=r"user\.attributes\.plan is undefined"):
        validate_template(missing)


def test_request_data_takes_precedence_over_personal_names() -> None:
    # Templates written before personalisation passed their own `user`: they keep working.
    assert sms("{{ user.name }}", ADA, AT, {"user": {"name": "Legacy"}}) == "Legacy"


def test_helpers_count_against_the_render_budget() -> None:
    text = "{% for i in range(200000) %}{{ format_number(i) }}{% endfor %}"
    with pytest.raises(TemplateError, match="budget"):
        sms(text, ADA, AT)
