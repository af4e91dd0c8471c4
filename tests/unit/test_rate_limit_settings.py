"""Channel rate limits are for providers: in_app has none, and its single sends use no queue."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tidings.models import Channel
from tidings.settings import Settings


def test_an_in_app_rate_limit_is_refused_with_its_reason() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, channel_rate_limits={"in_app": 5, "sms": 10})
    message = str(refused.value)
    assert "channel_rate_limits" in message
    assert "in_app writes Tidings' own database" in message


def test_a_provider_channel_keeps_its_rate_limit() -> None:
    settings = Settings(_env_file=None, channel_rate_limits={"sms": 10, "email": 2.5})
    assert settings.channel_rate_limits == {Channel.SMS: 10.0, Channel.EMAIL: 2.5}
