"""Tracking tokens without a server: what is signed, what is refused, and the production rule."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from tidings import tracking
from tidings.models import EngagementType
from tidings.settings import Settings
from tidings.tracking import InvalidToken, TrackedAction

SECRET = "s3cret"


def test_round_trip_keeps_pipes_in_the_url() -> None:
    action = TrackedAction("n-1", EngagementType.CLICKED, "https://example.com/a?x=1|2")
    assert tracking.verify(SECRET, tracking.sign(SECRET, action)) == action


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "/relative", "https://", "ftp://example.com/x"]
)
def test_only_absolute_http_urls_are_signed(url: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        tracking.sign(SECRET, TrackedAction("n-1", EngagementType.CLICKED, url))


def test_a_token_from_another_secret_is_refused() -> None:
    token = tracking.sign(SECRET, TrackedAction("n-1", EngagementType.OPENED, ""))
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
    }
    with pytest.raises(ValidationError, match="TIDINGS_TRACKING_SECRET must be set"):
        Settings(_env_file=None, **real)
    settings = Settings(_env_file=None, **real, tracking_secret="a-real-tracking-secret")
    assert settings.tracking_secret.get_secret_value() == "a-real-tracking-secret"
