"""The verified-key cache: a key is served from memory for at most its TTL, only keys that
verified are kept, a local revocation forgets at once, and the size is bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from tidings.api_keys import ApiKey, Scope
from tidings.key_cache import VerifiedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _key(key_id: str, revoked: bool = False) -> ApiKey:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return ApiKey(
        id=key_id, name="k", scopes=[Scope.SEND], created_at=at, revoked_at=at if revoked else None
    )


def test_a_verified_key_is_kept_for_less_than_its_ttl() -> None:
    clock = Clock()
    cache = VerifiedKeys(ttl_seconds=1.0, clock=clock)
    assert cache.get("tid_a_secret") is None
    cache.put("tid_a_secret", _key("a"))
    clock.now += 0.9
    found = cache.get("tid_a_secret")
    assert found is not None and found.id == "a"
    assert cache.get("tid_a_other-secret") is None  # another secret for the same id
    clock.now += 0.1
    assert cache.get("tid_a_secret") is None  # read again from the store


def test_revoked_keys_are_not_kept_and_forget_drops_a_key_at_once() -> None:
    cache = VerifiedKeys(clock=Clock())
    cache.put("tid_r_secret", _key("r", revoked=True))
    assert cache.get("tid_r_secret") is None
    cache.put("tid_a_secret", _key("a"))
    cache.put("tid_b_secret", _key("b"))
    cache.forget("a")
    assert cache.get("tid_a_secret") is None and cache.get("tid_b_secret") is not None


def test_the_cache_is_bounded_and_a_zero_ttl_switches_it_off() -> None:
    cache = VerifiedKeys(max_keys=2, clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(f"tid_{name}_secret", _key(name))
    assert cache.get("tid_a_secret") is None
    assert cache.get("tid_c_secret") is not None
    off = VerifiedKeys(ttl_seconds=0, clock=Clock())
    off.put("tid_a_secret", _key("a"))
    assert off.get("tid_a_secret") is None
