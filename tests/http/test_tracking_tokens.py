"""Tracking tokens without a server: what is signed, what is refused, and the production rule."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tidings import signing, tracking
from tidings.models import Channel, EngagementType, RenderedMessage
from tidings.settings import Settings
from tidings.tracking import InvalidToken, TrackedAction

SECRET = "s3cret"
LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def test_round_trip_keeps_pipes_in_the_url() -> None:
    action = TrackedAction("n-1", EngagementType.CLICKED, "https://example.com/a?x=1|2", LATER)
    assert tracking.verify(SECRET, tracking.sign(SECRET, action)) == action


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "/relative", "https://", "ftp://example.com/x"]
)
def test_only_absolute_http_urls_are_signed(url: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        tracking.sign(SECRET, TrackedAction("n-1", EngagementType.CLICKED, url, LATER))


def test_a_token_from_another_secret_is_refused() -> None:
    token = tracking.sign(SECRET, TrackedAction("n-1", EngagementType.OPENED, "", LATER))
    with pytest.raises(InvalidToken, match="bad signature"):
        tracking.verify("other", token)


def test_production_refuses_the_development_tracking_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("TIDINGS_")]:
        monkeypatch.delenv(key)
    real: dict[str, Any] = {
        "environment": "production",
        "webhook_secret": "whsec_cHJvZHVjdGlvbi1zZWNyZXQtZm9yLXRoZS10ZXN0cw==",
        "receipt_secret": "whsec_cmVjZWlwdHMtc2VjcmV0LWZvci10aGUtdGVzdHM=",
        "inbox_secret": "a-real-inbox-secret",
        "payload_keys": "k1:dGlkaW5ncy10ZXN0LXBheWxvYWQta2V5LTMyLWJ5dGU=",
    }
    with pytest.raises(ValidationError, match="TIDINGS_TRACKING_SECRET must be set"):
        Settings(_env_file=None, **real)
    settings = Settings(_env_file=None, **real, tracking_secret="a-real-tracking-secret")
    assert settings.tracking_secret.get_secret_value() == "a-real-tracking-secret"


def _raw_token(payload: bytes) -> str:
    """A token over any payload, as whoever holds the secret could make one."""
    return signing.seal(SECRET, tracking._CONTEXT, payload)


def test_tokens_expire_after_the_window_and_the_grace_period() -> None:
    settings = Settings(_env_file=None, engagement_window_hours=72, tracking_grace_hours=24)
    made = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert tracking.expiry(settings, now=made) == made + timedelta(hours=96)
    action = TrackedAction("n-1", EngagementType.CLICKED, "https://example.com/", made)
    token = tracking.sign(SECRET, action)
    assert tracking.verify(SECRET, token, now=made - timedelta(seconds=1)) == action
    with pytest.raises(tracking.ExpiredToken):
        tracking.verify(SECRET, token, now=made)


def test_a_signed_non_http_target_is_refused_at_the_redirect() -> None:
    # Only someone holding the secret can sign this (sign() itself refuses): as with the
    # public development secret. The redirect refuses it anyway.
    payload = f"n-1|clicked|email|{int(LATER.timestamp())}|javascript:alert(1)".encode()
    token = _raw_token(payload)
    with pytest.raises(tracking.RefusedTarget):
        tracking.verify(SECRET, token)


def test_tokens_name_the_channel_and_v2_tokens_still_work_without_one() -> None:
    action = TrackedAction("n-1", EngagementType.CLICKED, "https://e.com/", LATER, Channel.SMS)
    assert tracking.verify(SECRET, tracking.sign(SECRET, action)).channel is Channel.SMS
    # A link in an email sent before channels were signed: v2 layout under the v2 context.
    v2 = f"n-1|clicked|{int(LATER.timestamp())}|https://e.com/".encode()
    token = signing.seal(SECRET, tracking._CONTEXT_V2, v2)
    old = tracking.verify(SECRET, token)
    assert (old.channel, old.url, old.notification_id) == (None, "https://e.com/", "n-1")


def test_a_signed_unknown_channel_is_refused() -> None:
    token = _raw_token(f"n-1|clicked|fax|{int(LATER.timestamp())}|https://e.com/".encode())
    with pytest.raises(InvalidToken, match="channel"):
        tracking.verify(SECRET, token)


def test_a_v2_layout_under_the_v3_signature_is_refused() -> None:
    token = _raw_token(f"n-1|clicked|{int(LATER.timestamp())}|https://e.com/".encode())
    with pytest.raises(InvalidToken):
        tracking.verify(SECRET, token)


def test_tokens_of_the_first_format_are_refused() -> None:
    payload = b"n-1|clicked|https://example.com/"
    token = _raw_token(payload)
    with pytest.raises(InvalidToken):
        tracking.verify(SECRET, token)


def test_track_links_mints_tokens_for_the_messages_urls_only() -> None:
    settings = Settings(_env_file=None, tracking_secret="s3cret")
    message = RenderedMessage(
        channel=Channel.EMAIL,
        subject="Order",
        text="See https://shop.example/o/42?a=1&b=2 now",
        html='<a href="https://shop.example/o/42?a=1&amp;b=2">order</a> javascript:alert(1)',
    )
    tracked = tracking.track_links(settings, "https://t.example", "n-9", message)
    [text_link] = re.findall(r"https://t\.example/t/\S+", tracked.text)
    [html_link] = re.findall(r'href="(https://t\.example/t/[^"]+)"', tracked.html or "")
    for link in (text_link, html_link):
        action = tracking.verify("s3cret", link.rsplit("/", 1)[1])
        assert action.url == "https://shop.example/o/42?a=1&b=2"
        assert action.notification_id == "n-9"
    assert "javascript:alert(1)" in (tracked.html or "")  # left as text, never a token
