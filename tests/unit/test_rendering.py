"""Rendering: sandbox, autoescape, strict undefined, locale and channel fallbacks, bounds."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.models import Channel, TemplateContent, TemplateDefinition
from tidings.rendering import (
    MAX_RENDERED_BYTES,
    MAX_SMS_CHARS,
    TemplateError,
    render,
    required_variables,
    validate_template,
)


def make(
    channels: list[Channel] | None = None,
    locales: dict[str, TemplateContent] | None = None,
    sample: dict[str, Any] | None = None,
    **content: str | None,
) -> TemplateDefinition:
    return TemplateDefinition(
        id="welcome",
        channels=channels or [Channel.EMAIL],
        content=TemplateContent(**content),
        locales=locales or {},
        sample_data=sample or {},
    )


EMAIL = make(subject="Hi {{ name }}", text="Hello {{ name }}", html="<p>Hello {{ name }}</p>")


def test_html_is_autoescaped_and_text_is_not() -> None:
    msg = render(EMAIL, Channel.EMAIL, {"name": "<b>Tom & Jerry</b>"})
    assert msg.html == "<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert msg.text == "Hello <b>Tom & Jerry</b>"
    assert msg.subject == "Hi <b>Tom & Jerry</b>"
    assert msg.channel is Channel.EMAIL


def test_html_safe_filter_is_the_explicit_way_out() -> None:
    t = make(subject="s", text="t", html="{{ link | safe }}")
    assert render(t, Channel.EMAIL, {"link": "<a>x</a>"}).html == "<a>x</a>"


def test_email_without_html_has_none() -> None:
    t = make(subject="s", text="t")
    assert render(t, Channel.EMAIL, {}).html is None


def test_subject_whitespace_collapses_to_one_line() -> None:
    t = make(subject="Hi\n  {{ name }}\r\n\tthere ", text="a\nb")
    msg = render(t, Channel.EMAIL, {"name": "x\ny"})
    assert msg.subject == "Hi x y there"
    assert msg.text == "a\nb"  # bodies keep their lines


def test_push_title_collapses_whitespace() -> None:
    t = make(channels=[Channel.PUSH], push_title="A\n{{ x }}", push_body="b\nc")
    msg = render(t, Channel.PUSH, {"x": "B"})
    assert (msg.subject, msg.text) == ("A B", "b\nc")


def test_missing_variable_is_named() -> None:
    with pytest.raises(TemplateError) as err:
        render(EMAIL, Channel.EMAIL, {})
    assert err.value.field == "content.subject"
    assert "'name' is undefined" in err.value.reason
    assert "content.subject" in str(err.value) and "name" in str(err.value)


def test_missing_attribute_is_named() -> None:
    t = make(subject="s", text="{{ order.total }}")
    with pytest.raises(TemplateError) as err:
        render(t, Channel.EMAIL, {"order": {"id": 1}})
    assert err.value.field == "content.text"
    assert "total" in err.value.reason


def test_undefined_is_an_error_even_in_conditions() -> None:
    t = make(subject="s", text="{% if vip %}VIP{% endif %}")
    with pytest.raises(TemplateError, match="vip"):
        render(t, Channel.EMAIL, {})


def test_syntax_error_names_field_and_line() -> None:
    t = make(subject="s", text="ok", html="<p>\n{{ name }\n</p>")
    with pytest.raises(TemplateError) as err:
        render(t, Channel.EMAIL, {"name": "x"})
    assert err.value.field == "content.html"
    assert "syntax error on line 2" in err.value.reason


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ x['__class__'] }}",
        "{{ x._secret }}",
        "{{ lipsum.__globals__ }}",
        "{% if false %}{{ x.__class__ }}{% endif %}",  # refused even on a branch that never runs
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    t = make(subject="s", text=source)
    with pytest.raises(TemplateError) as err:
        render(t, Channel.EMAIL, {"x": {"_secret": 1}})
    assert err.value.field == "content.text"
    assert "sandbox" in err.value.reason


@pytest.mark.parametrize(
    "source",
    [
        "{{ items.append(4) }}",  # the immutable sandbox refuses mutation
        "{{ ''.__class__ }}",
        "{{ 'x' * 1000000000 }}",  # refused before it allocates
        "{{ 10 ** big }}",
    ],
)
def test_runtime_sandbox_violations_are_refused(source: str) -> None:
    t = make(subject="s", text=source)
    with pytest.raises(TemplateError, match="sandbox"):
        render(t, Channel.EMAIL, {"items": [1, 2, 3], "big": 10**9})


def test_ordinary_arithmetic_still_works() -> None:
    t = make(subject="{{ '-' * 3 }}", text="{{ 2 ** 10 }} {{ n * 2 }} {{ [0] * 2 }}")
    msg = render(t, Channel.EMAIL, {"n": 21})
    assert (msg.subject, msg.text) == ("---", "1024 42 [0, 0]")


def test_dict_items_with_leading_underscore_are_still_readable_by_key() -> None:
    t = make(subject="s", text="{{ x['_id'] }}")
    assert render(t, Channel.EMAIL, {"x": {"_id": 7}}).text == "7"


def test_runtime_error_in_template_names_field() -> None:
    t = make(subject="{{ 1 / n }}", text="t")
    with pytest.raises(TemplateError) as err:
        render(t, Channel.EMAIL, {"n": 0})
    assert err.value.field == "content.subject"
    assert "ZeroDivisionError" in err.value.reason


def test_output_over_bound_is_refused() -> None:
    t = make(subject="s", text="{% for i in range(3000) %}{{ chunk }}{% endfor %}")
    with pytest.raises(TemplateError, match=f"more than {MAX_RENDERED_BYTES} bytes"):
        render(t, Channel.EMAIL, {"chunk": "x" * 100})


def test_output_just_under_bound_is_fine() -> None:
    t = make(subject="s", text="{{ big }}")
    assert len(render(t, Channel.EMAIL, {"big": "é" * (MAX_RENDERED_BYTES // 2)}).text) > 0
    with pytest.raises(TemplateError):
        render(t, Channel.EMAIL, {"big": "é" * (MAX_RENDERED_BYTES // 2 + 1)})  # bytes, not chars


def test_sms_over_1600_chars_is_refused() -> None:
    t = make(channels=[Channel.SMS], sms="{{ body }}")
    assert len(render(t, Channel.SMS, {"body": "a" * MAX_SMS_CHARS}).text) == MAX_SMS_CHARS
    with pytest.raises(TemplateError) as err:
        render(t, Channel.SMS, {"body": "a" * (MAX_SMS_CHARS + 1)})
    assert err.value.field == "content.sms"
    assert "1601 characters" in err.value.reason


# --- locales ------------------------------------------------------------------------------------

LOCALIZED = make(
    channels=[Channel.EMAIL, Channel.PUSH],
    subject="Hello {{ name }}",
    text="Welcome",
    html="<p>Welcome</p>",
    push_title="Hey {{ name }}",
    locales={
        "fr": TemplateContent(subject="Bonjour {{ name }}", text="Bienvenue"),
        "pt-BR": TemplateContent(text="Bem-vindo"),
    },
)


@pytest.mark.parametrize(
    ("locale", "subject", "text"),
    [
        (None, "Hello Ann", "Welcome"),
        ("en", "Hello Ann", "Welcome"),
        ("fr", "Bonjour Ann", "Bienvenue"),
        ("fr-CA", "Bonjour Ann", "Bienvenue"),  # language prefix
        ("fr_CA", "Bonjour Ann", "Bienvenue"),
        ("pt-br", "Hello Ann", "Bem-vindo"),  # case-insensitive region, subject from default
        ("pt", "Hello Ann", "Welcome"),  # "pt" is not "pt-BR"
        ("de-DE", "Hello Ann", "Welcome"),
    ],
)
def test_locale_selection_and_field_fallback(locale: str | None, subject: str, text: str) -> None:
    msg = render(LOCALIZED, Channel.EMAIL, {"name": "Ann"}, locale=locale)
    assert (msg.subject, msg.text) == (subject, text)
    assert msg.html == "<p>Welcome</p>"  # fr has no html: the default one is used


def test_exact_locale_wins_over_language() -> None:
    t = make(
        subject="s",
        text="default",
        locales={"fr": TemplateContent(text="fr"), "fr-CA": TemplateContent(text="fr-CA")},
    )
    assert render(t, Channel.EMAIL, {}, locale="fr-CA").text == "fr-CA"
    assert render(t, Channel.EMAIL, {}, locale="fr-BE").text == "fr"


def test_locale_generic_field_beats_default_channel_field() -> None:
    # A French user gets the French subject as push title rather than the English push title.
    msg = render(LOCALIZED, Channel.PUSH, {"name": "Ann"}, locale="fr")
    assert (msg.subject, msg.text) == ("Bonjour Ann", "Bienvenue")
    assert render(LOCALIZED, Channel.PUSH, {"name": "Ann"}).subject == "Hey Ann"


def test_error_in_locale_names_locale_field() -> None:
    t = make(subject="s", text="ok", locales={"fr": TemplateContent(subject="{{ nom }}")})
    with pytest.raises(TemplateError) as err:
        render(t, Channel.EMAIL, {}, locale="fr")
    assert err.value.field == "locales.fr.subject"
    assert "nom" in err.value.reason


# --- channels -----------------------------------------------------------------------------------

BASIC = make(
    channels=list(Channel),
    subject="S {{ n }}",
    text="T {{ n }}",
    html="<i>{{ n }}</i>",
)


@pytest.mark.parametrize(
    ("channel", "subject", "text", "html"),
    [
        (Channel.EMAIL, "S 1", "T 1", "<i>1</i>"),
        (Channel.PUSH, "S 1", "T 1", None),  # push falls back to subject/text
        (Channel.SMS, "", "T 1", None),  # sms falls back to text
        (Channel.IN_APP, "S 1", "T 1", None),
        (Channel.WEBHOOK, "S 1", "T 1", None),
        (Channel.SLACK, "S 1", "T 1", None),
    ],
)
def test_channel_field_fallback(
    channel: Channel, subject: str, text: str, html: str | None
) -> None:
    msg = render(BASIC, channel, {"n": 1})
    assert (msg.channel, msg.subject, msg.text, msg.html) == (channel, subject, text, html)


def test_channel_specific_fields_win() -> None:
    t = make(
        channels=list(Channel), subject="S", text="T", push_title="PT", push_body="PB", sms="M"
    )
    assert render(t, Channel.PUSH, {}).subject == "PT"
    assert render(t, Channel.PUSH, {}).text == "PB"
    assert render(t, Channel.SMS, {}).text == "M"
    assert render(t, Channel.EMAIL, {}).text == "T"


def test_only_the_channels_fields_are_rendered() -> None:
    # The html field needs a variable the SMS does not: SMS renders without it.
    t = make(channels=[Channel.EMAIL, Channel.SMS], subject="s", text="t", html="{{ h }}", sms="m")
    assert render(t, Channel.SMS, {}).text == "m"


@pytest.mark.parametrize(
    ("channel", "content", "field"),
    [
        (Channel.EMAIL, {"text": "t"}, "content.subject"),
        (Channel.EMAIL, {"subject": "s"}, "content.text"),
        (Channel.SMS, {"subject": "s", "push_body": "b"}, "content.sms"),
        (Channel.PUSH, {"subject": "s", "sms": "m"}, "content.push_body"),
        (Channel.IN_APP, {"text": "t"}, "content.subject"),
        (Channel.SLACK, {"subject": "s"}, "content.text"),
    ],
)
def test_missing_required_field_names_channel_and_field(
    channel: Channel, content: dict[str, str], field: str
) -> None:
    t = TemplateDefinition(id="t", channels=[channel], content=TemplateContent(**content))
    with pytest.raises(TemplateError) as err:
        render(t, channel, {})
    assert err.value.field == field
    assert str(channel) in err.value.reason


def test_push_title_and_slack_subject_are_optional() -> None:
    t = make(channels=[Channel.PUSH, Channel.SLACK], text="body")
    assert render(t, Channel.PUSH, {}).subject == ""
    assert render(t, Channel.SLACK, {}).text == "body"


# --- validate_template and required_variables ---------------------------------------------------


def test_validate_accepts_good_template() -> None:
    t = make(
        channels=[Channel.EMAIL, Channel.SMS, Channel.PUSH],
        subject="Hi {{ user.name }}",
        text="{% for o in orders %}{{ o }} {% endfor %}",
        sms="{{ orders | length }} orders",
        locales={"fr": TemplateContent(subject="Salut {{ user.name }}")},
        sample={"user": {"name": "Ann"}, "orders": [1, 2]},
    )
    validate_template(t)  # no exception


@pytest.mark.parametrize(
    ("template", "field"),
    [
        (make(subject="s", text="{{ x"), "content.text"),
        (make(subject="s", text="t", sample={}, html="{{ missing }}"), "content.html"),
        (make(subject="s", text="{{ ''.__class__ }}"), "content.text"),
        (make(channels=[Channel.SMS], subject="s"), "content.sms"),
        (
            # the broken locale field is never the one rendered, but compiling catches it
            make(subject="s", text="t", locales={"fr": TemplateContent(sms="{% if %}")}),
            "locales.fr.sms",
        ),
        (
            make(subject="s", text="t", locales={"fr": TemplateContent(text="{{ nom }}")}),
            "locales.fr.text",
        ),
    ],
)
def test_validate_refuses_bad_templates(template: TemplateDefinition, field: str) -> None:
    with pytest.raises(TemplateError) as err:
        validate_template(template)
    assert err.value.field == field


def test_required_variables_across_fields_and_locales() -> None:
    t = make(
        subject="{{ greeting }} {{ user.name }}",
        text="{% set n = 3 %}{{ n }}{% for i in items %}{{ i }}{{ loop.index }}{% endfor %}",
        html="{{ range(2) | list }}",
        locales={"fr": TemplateContent(sms="{{ code }}")},
    )
    # greeting and user come from tidings.personalise, not from the data
    assert required_variables(t) == {"items", "code"}


def test_required_variables_reports_syntax_errors() -> None:
    with pytest.raises(TemplateError, match=r"content\.text"):
        required_variables(make(subject="s", text="{% for %}"))
