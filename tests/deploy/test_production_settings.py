"""Settings refuses to run in production with the development defaults that would be unsafe."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from tidings.settings import Settings

RECEIPTS = "whsec_cmVjZWlwdHMtc2VjcmV0LWZvci10aGUtdGVzdHM="
TRACKING = "a-long-random-tracking-secret-for-tests"
INBOX = "a-long-random-inbox-secret-for-tests"
PAYLOAD_KEYS = "k1:dGlkaW5ncy10ZXN0LXBheWxvYWQta2V5LTMyLWJ5dGU="
SECRET = "whsec_cHJvZHVjdGlvbi1zZWNyZXQtZm9yLXRoZS10ZXN0cw=="


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TIDINGS_"):
            monkeypatch.delenv(key)


def test_production_refuses_the_default_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="TIDINGS_WEBHOOK_SECRET must be set in production"):
        Settings(_env_file=None, environment="production")


def test_production_refuses_the_default_tracking_secret() -> None:
    with pytest.raises(ValidationError, match="TIDINGS_TRACKING_SECRET"):
        Settings(
            _env_file=None,
            environment="production",
            webhook_secret=SECRET,
        )


def test_production_accepts_a_real_secret_without_private_targets() -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        webhook_secret=SECRET,
        tracking_secret=TRACKING,
        receipt_secret=RECEIPTS,
        inbox_secret=INBOX,
        payload_keys=PAYLOAD_KEYS,
    )
    assert settings.webhook_secret.get_secret_value() == SECRET


def test_production_refuses_the_default_inbox_secret() -> None:
    with pytest.raises(ValidationError, match="TIDINGS_INBOX_SECRET must be set"):
        Settings(
            _env_file=None,
            environment="production",
            webhook_secret=SECRET,
            tracking_secret=TRACKING,
            receipt_secret=RECEIPTS,
        )


def test_production_refuses_to_run_without_payload_keys() -> None:
    with pytest.raises(ValidationError, match="TIDINGS_PAYLOAD_KEYS must be set"):
        Settings(
            _env_file=None,
            environment="production",
            webhook_secret=SECRET,
            tracking_secret=TRACKING,
            receipt_secret=RECEIPTS,
            inbox_secret=INBOX,
        )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("k1", "expected id:base64key"),
        ("k1:not base64!", "not base64"),
        ("k1:c2hvcnQ=", "AES-256 needs 32"),
        (f"{PAYLOAD_KEYS},{PAYLOAD_KEYS}", "appears twice"),
    ],
)
def test_malformed_payload_keys_are_refused(value: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(_env_file=None, payload_keys=value)


def test_development_keeps_its_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.environment == "development" and settings.webhook_allowed_networks == []


def test_allowed_networks_read_comma_separated_and_refuse_nonsense(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIDINGS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, ::1,hooks.internal")
    assert Settings(_env_file=None).webhook_allowed_networks == [
        "127.0.0.0/8",
        "::1",
        "hooks.internal",
    ]
    monkeypatch.setenv("TIDINGS_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ValidationError, match="neither a network"):
        Settings(_env_file=None)
