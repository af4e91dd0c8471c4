"""Who may call what: every /v1 route declares the scope it needs, as a dependency.

    @router.get(..., dependencies=[Requires(Scope.READ)])

`Authorization: Bearer <API key>`; a missing, unknown, malformed or revoked key is 401 with one
body for all of them (no answer says whether a key exists), a live key without the scope is
403. A verified key is remembered for at most 1 s (`tidings.key_cache`), so a revocation holds at
once on the process that made it and within 1 s on every other API process. Inbox routes also
take an inbox token (`tidings.inbox_tokens`) for the user in the path: another user's inbox is
403, an expired or tampered token 401.

`/healthz`, `/t/...` (signed tracking tokens) and `/v1/receipts...` (provider signatures) keep
their own rules; tests/http/test_auth.py walks `app.routes` so a new /v1 route without one of
these dependencies fails.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from starter.http.deps import get_tidings
from tidings import inbox_tokens
from tidings.api_keys import ApiKey, Scope
from tidings.errors import Forbidden, Unauthorized

UNAUTHENTICATED = "a valid API key is required (Authorization: Bearer <key>)"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`tidings api-key create`), or on inbox routes an inbox token",
)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _credential(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized(UNAUTHENTICATED)
    return credentials.credentials


async def _api_key(request: Request, credential: str, scope: Scope) -> ApiKey:
    key = await get_tidings(request).authenticate(credential)
    if key is None:
        raise Unauthorized(UNAUTHENTICATED)
    if not key.allows(scope):
        raise Forbidden(f"this API key lacks the {scope.value!r} scope")
    request.state.api_key_id = key.id
    return key


async def api_key_with_scope(request: Request, credential: str | None, scope: Scope) -> ApiKey:
    """For routes that take the key elsewhere than the header (the codec endpoint's path)."""
    if not credential:
        raise Unauthorized(UNAUTHENTICATED)
    return await _api_key(request, credential, scope)


class _ScopeCheck:
    """An API key with `scope` (or admin)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request, credentials: Credentials) -> None:
        await _api_key(request, _credential(credentials), self.scope)


class _InboxCheck(_ScopeCheck):
    """An inbox token for the user in the path, or an API key with `scope`."""

    async def __call__(self, request: Request, credentials: Credentials) -> None:
        await self._check(request, _credential(credentials))

    async def _check(self, request: Request, credential: str) -> None:
        if not credential.startswith(inbox_tokens.PREFIX):
            await _api_key(request, credential, self.scope)
            return
        grant = get_tidings(request).inbox_grant(credential)
        if grant is None:
            raise Unauthorized("the inbox token is invalid or has expired")
        if grant.user_id != request.path_params.get("user_id"):
            raise Forbidden("this inbox token is for another user's inbox")


class _InboxStreamCheck(_InboxCheck):
    """As `_InboxCheck`, and the inbox token may come as `?token=` instead: a browser's
    EventSource cannot set headers. API keys stay out of URLs (and so out of access logs)."""

    async def __call__(
        self,
        request: Request,
        credentials: Credentials,
        token: Annotated[
            str | None,
            Query(
                max_length=inbox_tokens.MAX_TOKEN_CHARS,
                description="The user's inbox token, for clients that cannot set headers",
            ),
        ] = None,
    ) -> None:
        if credentials is None and token:
            if not token.startswith(inbox_tokens.PREFIX):
                raise Unauthorized("only an inbox token may be given as ?token=")
            await self._check(request, token)
            return
        await self._check(request, _credential(credentials))


def Requires(scope: Scope) -> Any:
    return Depends(_ScopeCheck(scope))


def InboxAccess(scope: Scope) -> Any:
    return Depends(_InboxCheck(scope))


def InboxStreamAccess(scope: Scope) -> Any:
    return Depends(_InboxStreamCheck(scope))


def required_scope(dependency: Any) -> tuple[Scope, bool] | None:
    """(scope, takes inbox tokens) if `dependency` (a route's dependant call) is one of ours."""
    if isinstance(dependency, _ScopeCheck):
        return dependency.scope, isinstance(dependency, _InboxCheck)
    return None
