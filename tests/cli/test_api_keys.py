"""`tidings api-key create|list|revoke`: a key printed once, listed without its secret, revoked."""

from __future__ import annotations

import asyncio

from tests.cli.helpers import Cli, ok, one_line_error
from tests.ports import refused_port
from tests.support import Stack
from tidings.api_keys import Scope
from tidings.key_cache import TTL_SECONDS


async def test_create_list_revoke(cli: Cli, stack: Stack) -> None:
    out = ok(await cli("api-key", "create", "billing", "--scope", "send", "--scope", "read"))
    key = out.splitlines()[0]
    found = await stack.tidings.authenticate(key)
    assert found is not None and found.name == "billing"
    assert found.scopes == [Scope.SEND, Scope.READ]

    listed = ok(await cli("api-key", "list"))
    assert found.id in listed and "billing" in listed and "send,read" in listed
    assert key not in listed

    assert f"API key {found.id} revoked" in ok(await cli("api-key", "revoke", found.id))
    stored = await stack.store.api_key_with_digest(found.id)
    assert stored is not None and stored[0].revoked_at is not None
    # The CLI is another process: this one, which verified the key a moment ago, may keep it
    # for the verified-key cache's TTL (tidings.key_cache) and refuses it after that.
    await asyncio.sleep(TTL_SECONDS)
    assert await stack.tidings.authenticate(key) is None


async def test_bad_input_is_one_line(cli: Cli) -> None:
    result = await cli("api-key", "create", "x", "--scope", "root")
    assert result.exit_code != 0 and "Traceback" not in result.output
    one_line_error(await cli("api-key", "revoke", "0123456789abcdef"), "not found")


async def test_keys_are_managed_while_temporal_is_down(cli: Cli, stack: Stack) -> None:
    with refused_port() as port:
        down = Cli({**cli.env, "TIDINGS_TEMPORAL_ADDRESS": f"127.0.0.1:{port}"})
        out = ok(await down("api-key", "create", "offline", "--scope", "admin"))
        assert await stack.tidings.authenticate(out.splitlines()[0]) is not None
        assert "offline" in ok(await down("api-key", "list"))
