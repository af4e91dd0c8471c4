"""API keys in the Python API: create (the key is shown once), list, revoke, authenticate.

Only a key's SHA-256 digest is stored (`tidings.api_keys`); a key verified in the last second is
served from memory (`tidings.key_cache`), which is how long a revocation takes to reach other
API processes.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings import api_keys
from tidings.api_keys import ApiKey, CreatedApiKey, Scope
from tidings.errors import InvalidRequest, NotFound
from tidings.key_cache import VerifiedKeys
from tidings.store import Store

_NO_DIGEST = "0" * 64  # compared against when a key's id is unknown


class ApiKeysMixin:
    """Mixed into `starter.client.Tidings`."""

    store: Store
    _verified_keys: VerifiedKeys

    async def create_api_key(self, name: str, scopes: Sequence[Scope | str]) -> CreatedApiKey:
        """A new key with these scopes. The key is in the result once and never stored."""
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidRequest("name", "give a name of 1 to 128 characters")
        try:
            chosen = api_keys.normalise_scopes(scopes)
        except ValueError as e:
            raise InvalidRequest("scopes", str(e)) from e
        new = api_keys.generate()
        stored = await self.store.add_api_key(new, name, chosen)
        return CreatedApiKey(api_key=stored, key=new.key)

    async def list_api_keys(self) -> list[ApiKey]:
        return await self.store.list_api_keys()

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key: this process refuses it from its next request, every other API process
        within `key_cache.TTL_SECONDS` (1 s). Revoking a revoked key is not an error."""
        if await self.store.api_key_with_digest(key_id) is None:
            raise NotFound("API key", key_id)
        await self.store.revoke_api_key(key_id)
        self._verified_keys.forget(key_id)

    async def authenticate(self, key: str) -> ApiKey | None:
        """The live key this is, else None (unknown, malformed, revoked: the caller cannot tell
        which). A key verified in the last second is taken from memory (`tidings.key_cache`)."""
        cached = self._verified_keys.get(key)
        if cached is not None:
            return cached
        found_id = api_keys.key_id(key)
        found = await self.store.api_key_with_digest(found_id) if found_id else None
        # The digest is compared whether or not the id exists: the same work either way.
        record, stored_digest = found if found is not None else (None, _NO_DIGEST)
        if not api_keys.matches(key, stored_digest) or record is None:
            return None
        if record.revoked_at is not None:
            return None
        self._verified_keys.put(key, record)
        return record
