"""A short-lived cache of API keys this process has verified against the store.

Without it every request costs a database read (and a session) for its key, which was the
largest single cost of a small request such as `POST /v1/notifications/{id}/events`. A key is
remembered for at most `TTL_SECONDS` after it was read from the store, so a revocation made on
another API process holds everywhere within that bound; the process that revokes forgets the key
at once. Only keys that verified are kept (an unknown or forged key is never cached, so guessing
cannot fill it), by the SHA-256 of the key, and at most `MAX_KEYS` of them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tidings.api_keys import ApiKey, digest

TTL_SECONDS = 1.0
MAX_KEYS = 1024


class VerifiedKeys:
    def __init__(
        self,
        ttl_seconds: float = TTL_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()

    def get(self, key: str) -> ApiKey | None:
        """The live key verified within the last TTL, else None (ask the store)."""
        if self._ttl <= 0:
            return None
        found = self._keys.get(digest(key))
        if found is None:
            return None
        read_at, record = found
        if self._clock() - read_at >= self._ttl:
            del self._keys[digest(key)]
            return None
        return record

    def put(self, key: str, record: ApiKey) -> None:
        if self._ttl <= 0 or record.revoked_at is not None:
            return
        hashed = digest(key)
        self._keys[hashed] = (self._clock(), record)
        self._keys.move_to_end(hashed)
        while len(self._keys) > self._max:
            self._keys.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop every cached key with this id (a revocation on this process)."""
        for hashed in [h for h, (_, r) in self._keys.items() if r.id == key_id]:
            del self._keys[hashed]
