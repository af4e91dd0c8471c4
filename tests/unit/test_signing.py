"""The one token format behind tracking links, unsubscribe links and inbox tokens: a token made
for one purpose never passes as another's, and any change to it is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tidings import inbox_tokens, signing, tracking, unsubscribe
from tidings.models import EngagementType
from tidings.tracking import TrackedAction

SECRET = "one-secret-for-every-purpose"
LATER = datetime.now(UTC) + timedelta(hours=1)


def _tokens() -> dict[str, str]:
    click = TrackedAction("n-1", EngagementType.CLICKED, "https://example.com/", LATER)
    return {
        "tracking": tracking.sign(SECRET, click),
        "unsubscribe": unsubscribe.sign(SECRET, "u-1", "marketing"),
        "inbox": inbox_tokens.mint(SECRET, "u-1", LATER),
    }


def _verify(purpose: str, token: str) -> object:
    if purpose == "tracking":
        return tracking.verify(SECRET, token)
    if purpose == "unsubscribe":
        return unsubscribe.verify(SECRET, token)
    return inbox_tokens.verify(SECRET, token)


@pytest.mark.parametrize("made_for", ["tracking", "unsubscribe", "inbox"])
@pytest.mark.parametrize("offered_as", ["tracking", "unsubscribe", "inbox"])
def test_a_token_passes_only_for_the_purpose_it_was_made_for(
    made_for: str, offered_as: str
) -> None:
    token = _tokens()[made_for]
    if made_for == offered_as:
        assert _verify(offered_as, token)
        return
    if offered_as == "inbox":
        token = inbox_tokens.PREFIX + token.removeprefix(inbox_tokens.PREFIX)
    with pytest.raises(ValueError):
        _verify(offered_as, token)


def test_a_changed_payload_or_signature_is_refused() -> None:
    token = signing.seal(SECRET, b"ctx\x00", b"user|category")
    payload, context = signing.unseal(SECRET, token, [b"ctx\x00"], what="a token", max_chars=100)
    assert (payload, context) == (b"user|category", b"ctx\x00")
    encoded, signed = token.split(".")
    forged = signing.b64encode(b"admin|category")
    for bad, reason in [
        (f"{forged}.{signed}", "bad signature"),
        (f"{encoded}.{signed[:-4]}", "bad signature"),
        (encoded, "not a token"),
        (f"{encoded}.a", "not valid base64url"),
        (token + "x" * 100, "longer than 100 characters"),
    ]:
        with pytest.raises(signing.InvalidSeal, match=reason):
            signing.unseal(SECRET, bad, [b"ctx\x00"], what="a token", max_chars=100)
    with pytest.raises(signing.InvalidSeal, match="bad signature"):
        signing.unseal("another-secret", token, [b"ctx\x00"], what="a token", max_chars=100)
