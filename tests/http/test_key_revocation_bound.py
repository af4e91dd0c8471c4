"""A revocation on one API process holds on another within the verified-key cache's TTL
(`tidings.key_cache`, 1 s), and at once on the process that revoked."""

from __future__ import annotations

from starter.client import Tidings
from tests.support import Stack
from tidings.api_keys import Scope
from tidings.key_cache import TTL_SECONDS, VerifiedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_another_process_refuses_a_revoked_key_within_the_ttl(stack: Stack) -> None:
    revoker = stack.tidings
    clock = Clock()
    other = Tidings(stack.settings, stack.store, revoker.temporal)
    other._verified_keys = VerifiedKeys(clock=clock)
    created = await revoker.create_api_key("two-processes", [Scope.READ])
    assert await revoker.authenticate(created.key) is not None
    assert await other.authenticate(created.key) is not None  # now remembered by `other`
    await revoker.revoke_api_key(created.api_key.id)
    assert await revoker.authenticate(created.key) is None  # at once where it was revoked
    clock.now += TTL_SECONDS / 2
    assert await other.authenticate(created.key) is not None  # the bound, not longer
    clock.now += TTL_SECONDS / 2
    assert await other.authenticate(created.key) is None
    # A key that never verified is never remembered: a wrong secret asks the store each time.
    forged = created.key[:-4] + ("AAAA" if not created.key.endswith("AAAA") else "BBBB")
    assert await other.authenticate(forged) is None
