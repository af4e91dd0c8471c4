"""Which links tracking rewrites: only `<a href>` in HTML (any case, quoting or order), every
http(s) URL in text, never a link marked untracked, an image, a style, a comment or a script."""

from __future__ import annotations

import re

import pytest

from tidings import rendering, tracking
from tidings.channels.slack import escape_mrkdwn
from tidings.html_links import rewrite_anchor_hrefs
from tidings.models import Channel, EngagementType, RenderedMessage, TemplateDefinition
from tidings.settings import Settings

SETTINGS = Settings(_env_file=None, tracking_secret="s3cret")
BASE = "https://t.example"
TRACKED = re.compile(r"https://t\.example/t/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _target(link: str) -> tracking.TrackedAction:
    return tracking.verify("s3cret", link.rsplit("/", 1)[1])


def _html(document: str, channel: Channel = Channel.EMAIL) -> str:
    message = RenderedMessage(channel=channel, subject="s", text="", html=document)
    out = tracking.track_links(SETTINGS, BASE, "n-1", message).html
    assert out is not None
    return out


def test_only_the_href_of_a_tags_is_rewritten_whatever_the_spelling() -> None:
    document = (
        "<A HREF='https://a.example/x?a=1&amp;b=2' CLASS=btn>one</A>\n"
        "<a class=\"c\" title='t' href=https://b.example/p>two</a>"
        '<a/href="https://c.example/">three</a>\n'
        '<img src="https://img.example/logo.png" alt="">'
        '<div style="background:url(https://bg.example/i.png)">https://text.example/</div>'
        '<!-- <a href="https://comment.example/"> -->'
        "<script>var a = '<a href=\"https://script.example/\">';</script>"
        '<style>a { background: url("https://style.example/x.png") }</style>'
    )
    out = _html(document)
    links = TRACKED.findall(out)
    assert [_target(link).url for link in links] == [
        "https://a.example/x?a=1&b=2",
        "https://b.example/p",
        "https://c.example/",
    ]
    # Everything else is kept byte for byte.
    for kept in (
        '<img src="https://img.example/logo.png" alt="">',
        '<div style="background:url(https://bg.example/i.png)">https://text.example/</div>',
        '<!-- <a href="https://comment.example/"> -->',
        "<script>var a = '<a href=\"https://script.example/\">';</script>",
        '<style>a { background: url("https://style.example/x.png") }</style>',
        "CLASS=btn>one</A>",
        "<a class=\"c\" title='t' href=",
    ):
        assert kept in out
    assert all(_target(link).channel is Channel.EMAIL for link in links)


@pytest.mark.parametrize(
    "href", ["mailto:help@example.com", "tel:+14155550100", "#top", "/relative", "javascript:x()"]
)
def test_links_that_are_not_absolute_http_stay_as_written(href: str) -> None:
    document = f'<a href="{href}">x</a>'
    assert _html(document) == document


def test_an_a_marked_untracked_keeps_its_link_and_loses_the_mark() -> None:
    document = (
        '<a data-tidings-untracked href="https://keep.example/">k</a>'
        '<a href="https://keep2.example/" DATA-TIDINGS-UNTRACKED="">k2</a>'
        '<a href="https://track.example/">t</a>'
    )
    out = _html(document)
    assert '<a href="https://keep.example/">k</a>' in out
    assert '<a href="https://keep2.example/" >k2</a>' in out
    assert "untracked" not in out.lower()
    assert [_target(link).url for link in TRACKED.findall(out)] == ["https://track.example/"]


def test_anchors_without_links_and_broken_html_are_left_alone() -> None:
    document = '<a name="x">no href</a><a href>empty</a><a href="https://ok.example/"'
    assert _html(document) == document  # the last tag never closes: not a tag


def test_text_links_end_before_sentence_punctuation_and_unbalanced_parentheses() -> None:
    message = RenderedMessage(
        channel=Channel.SMS,
        text="Go to HTTPS://a.example/x. Or (see https://b.example/wiki/A_(b)), "
        "or <https://c.example/|Slack>!",
    )
    out = tracking.track_links(SETTINGS, BASE, "n-1", message).text
    links = TRACKED.findall(out)
    assert [_target(link).url for link in links] == [
        "HTTPS://a.example/x",
        "https://b.example/wiki/A_(b)",
        "https://c.example/",
    ]
    assert {_target(link).channel for link in links} == {Channel.SMS}
    assert out.startswith("Go to https://t.example/t/") and "). Or" not in out
    assert re.search(r"\), or <https://t\.example/t/\S+\|Slack>!$", out)


def test_own_links_are_never_wrapped_again() -> None:
    text = f"{BASE}/u/abc and {BASE}/t/def"
    message = RenderedMessage(channel=Channel.EMAIL, text=text)
    assert tracking.track_links(SETTINGS, BASE, "n-1", message).text == text


def _template(**content: str) -> TemplateDefinition:
    return TemplateDefinition.model_validate(
        {"id": "t", "channels": ["email", "sms"], "content": {"subject": "s", **content}}
    )


def test_the_untracked_filter_keeps_a_url_as_written_in_text_and_html() -> None:
    template = _template(
        text="{{ a | untracked }} and {{ b }}",
        html='<a href="{{ a | untracked }}">a</a><a href="{{ b }}">b</a>',
    )
    data = {"a": "https://keep.example/?x=1&y=2", "b": "https://track.example/"}
    marked = rendering.render(template, Channel.EMAIL, data, keep_marks=True)
    out = tracking.track_email(SETTINGS, BASE, "n-1", marked)
    assert out.text.startswith("https://keep.example/?x=1&y=2 and https://t.example/t/")
    assert '<a href="https://keep.example/?x=1&amp;y=2">a</a>' in (out.html or "")
    assert tracking.MARK_OPEN not in out.text + (out.html or "")
    # Rendered for anything but sending (previews, checks), the marks never show.
    plain = rendering.render(template, Channel.EMAIL, data)
    assert plain.text == "https://keep.example/?x=1&y=2 and https://track.example/"


def test_the_pixel_and_links_of_an_email_carry_its_channel() -> None:
    message = RenderedMessage(
        channel=Channel.EMAIL, text="", html='<a href="https://a.example/">a</a>'
    )
    out = tracking.track_email(SETTINGS, BASE, "n-1", message).html or ""
    click, pixel = TRACKED.findall(out)
    assert _target(pixel).type is EngagementType.OPENED
    assert _target(pixel).channel is _target(click).channel is Channel.EMAIL


def test_unsubscribe_url_is_an_empty_variable_outside_the_send_path() -> None:
    template = _template(text="Stop: {{ unsubscribe_url }}.")
    assert rendering.render(template, Channel.EMAIL, {}).text == "Stop: ."
    assert "unsubscribe_url" not in rendering.required_variables(template)


def test_slack_keeps_http_links_but_escapes_everything_else() -> None:
    text = "<https://a.example/?x=1&y=2|Open & see> <!channel> <@U123> <javascript:x|y> a<b"
    assert escape_mrkdwn(text) == (
        "<https://a.example/?x=1&amp;y=2|Open &amp; see> &lt;!channel&gt; &lt;@U123&gt;"
        " &lt;javascript:x|y&gt; a&lt;b"
    )


def test_rewrite_keeps_a_document_without_anchors_identical() -> None:
    document = "<p>Hi\r\n<b>there</b> &amp; https://x.example/</p>"
    assert rewrite_anchor_hrefs(document, lambda url: "changed") == document
