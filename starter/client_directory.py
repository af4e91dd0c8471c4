"""Users, their devices and preferences, and templates in the Python API: each checked at the
edge (a user's webhook and Slack targets, a template's render against its sample data) before
the store keeps it. A mixin of `starter.client.Tidings`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError

from starter.client_parse import parse_model as _parse
from tidings import rendering, targets
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.models import (
    Device,
    NotificationResult,
    Platform,
    Preferences,
    Template,
    TemplateDefinition,
    User,
)
from tidings.settings import Settings
from tidings.store import Store
from workflows import search_attributes as sa


class UserDeleted(BaseModel):
    user_id: str
    cancelled: list[str]  # the notifications that were pending and are now cancelled


class DirectoryMixin:
    settings: Settings
    store: Store
    temporal: Client

    if TYPE_CHECKING:  # provided by Tidings

        async def cancel(
            self, notification_id: str, reason: str = "cancelled by request"
        ) -> NotificationResult: ...

    async def upsert_user(self, user: User | dict[str, Any]) -> User:
        parsed = _parse(User, user)
        self._check_targets(parsed)
        return await self.store.upsert_user(parsed)

    def _check_targets(self, user: User) -> None:
        """Webhook and Slack URLs must reach public addresses (`tidings.targets`); the worker
        checks again after resolving the name, when it sends."""
        policy = self.settings.webhook_target_policy
        named = [("webhook_url", user.webhook_url)]
        named += [(f"webhook_urls[{i}]", u) for i, u in enumerate(user.webhook_urls)]
        named += [("slack_webhook_url", user.slack_webhook_url)]
        for field, url in named:
            if url is None:
                continue
            try:
                targets.check_url(str(url), policy)
            except targets.TargetRefused as e:
                raise InvalidRequest(field, str(e)) from e

    async def get_user(self, user_id: str) -> User:
        user = await self.store.get_user(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def delete_user(self, user_id: str) -> UserDeleted:
        """Cancel the user's notifications that have not been sent, then remove their personal
        data (tidings.store.users.ErasureMixin.erase_user). Runs still inside their engagement
        window keep only the encrypted payloads they were started with."""
        await self.get_user(user_id)
        pending = set(await self.store.pending_notification_ids(user_id))
        with contextlib.suppress(RPCError):  # visibility: servers without it have the store
            query = f'{sa.USER.name} = "{user_id}" AND ExecutionStatus = "Running"'
            async for run in self.temporal.list_workflows(query):
                pending.add(run.id.removeprefix("notification/"))
        cancelled = []
        for notification_id in sorted(pending):
            try:
                await self.cancel(notification_id, "the user was deleted")
                cancelled.append(notification_id)
            except (Conflict, NotFound):
                pass  # sent or finished meanwhile: nothing to cancel
        await self.store.erase_user(user_id)
        return UserDeleted(user_id=user_id, cancelled=cancelled)

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        return await self.store.list_users(limit=limit, offset=offset)

    async def add_device(self, device: Device | dict[str, Any]) -> Device:
        device = _parse(Device, device)
        await self.get_user(device.user_id)
        return await self.store.add_device(device)

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.store.list_devices(user_id)

    async def remove_device(self, platform: Platform, token: str) -> bool:
        return await self.store.remove_device(platform, token)

    async def set_preferences(self, preferences: Preferences | dict[str, Any]) -> Preferences:
        preferences = _parse(Preferences, preferences)
        await self.get_user(preferences.user_id)
        return await self.store.set_preferences(preferences)

    async def get_preferences(self, user_id: str) -> Preferences:
        await self.get_user(user_id)
        return await self.store.get_preferences(user_id)

    async def register_template(self, definition: TemplateDefinition | dict[str, Any]) -> Template:
        """Check syntax, sandbox rules and a render against `sample_data`, then store a new
        version (or return the current one if nothing changed)."""
        definition = _parse(TemplateDefinition, definition)
        try:
            await rendering.validate_template_async(definition)
        except rendering.TemplateError as e:
            raise InvalidRequest(e.field, e.reason) from e
        return await self.store.add_template_version(definition)

    async def get_template(self, template_id: str, version: int | None = None) -> Template:
        template = await self.store.get_template(template_id, version)
        if template is None:
            key = template_id if version is None else f"{template_id} v{version}"
            raise NotFound("template", key)
        return template

    async def list_templates(self) -> list[Template]:
        return await self.store.list_templates()
