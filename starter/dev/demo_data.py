"""The prototype's demo, as data: two users and three templates (seed/notification-systems.md).

The prototype's phone numbers (+1234567890, +1987654321) are not valid numbers, so the demo users
get valid ones from the fictional 555-01xx range. Its `{name}` placeholders become Jinja2.
Beyond the prototype, for the provider emulators of `tidings dev`: user_002 has an iPhone (APNs)
besides the prototype's FCM tokens, and a Slack member id for chat.postMessage.

seed_demo_data registers them through the client (`tidings dev`, `tidings demo`).
"""

from __future__ import annotations

import contextlib
import logging

from starter.client import Tidings
from tidings.errors import NotFound
from tidings.models import (
    Channel,
    Device,
    Platform,
    Preferences,
    Priority,
    TemplateContent,
    TemplateDefinition,
    User,
)

log = logging.getLogger("tidings.dev")

USERS = [
    User(
        id="user_001",
        email="john.doe@example.com",
        phone="+12025550123",
        timezone="America/New_York",
        attributes={"name": "John"},
    ),
    User(
        id="user_002",
        email="jane.smith@example.com",
        phone="+14155550132",
        timezone="America/Los_Angeles",
        slack_user_id="U0DEMO0002",
        attributes={"name": "Jane"},
    ),
]

DEVICES = [
    Device(user_id="user_001", platform=Platform.FCM, token="fcm_token_123"),
    Device(user_id="user_001", platform=Platform.FCM, token="fcm_token_456"),
    Device(user_id="user_002", platform=Platform.FCM, token="fcm_token_789"),
    # APNs device tokens are 64 hex digits.
    Device(user_id="user_002", platform=Platform.APNS, token="a0b1c2d3e4f5" * 5 + "a0b1",
           label="Jane's iPhone"),
]  # fmt: skip

PREFERENCES = [
    Preferences(
        user_id="user_001",
        channels={
            Channel.EMAIL: True,
            Channel.PUSH: True,
            Channel.SMS: False,
            Channel.IN_APP: True,
        },
    ),
    Preferences(
        user_id="user_002",
        channels={Channel.EMAIL: True, Channel.PUSH: True, Channel.SMS: True, Channel.IN_APP: True},
    ),
]

TEMPLATES = [
    TemplateDefinition(
        id="welcome",
        name="Welcome Message",
        category="onboarding",
        channels=[Channel.EMAIL, Channel.PUSH, Channel.IN_APP],
        default_priority=Priority.MEDIUM,
        content=TemplateContent(
            subject="Welcome to {{ app_name }}, {{ user_name }}!",
            text=(
                "Hi {{ user_name }}, welcome to {{ app_name }}! We're excited to have you on board."
            ),
            html=(
                "<p>Hi <strong>{{ user_name }}</strong>, welcome to {{ app_name }}!</p>"
                "<p>We're excited to have you on board.</p>"
            ),
        ),
        sample_data={"app_name": "MyApp", "user_name": "Ada"},
    ),
    TemplateDefinition(
        id="order_confirmation",
        name="Order Confirmation",
        category="transactional",
        channels=[Channel.EMAIL, Channel.SMS, Channel.IN_APP],
        default_priority=Priority.HIGH,
        content=TemplateContent(
            subject="Order #{{ order_id }} Confirmed",
            text=(
                "Your order #{{ order_id }} for ${{ amount }} has been confirmed."
                " Expected delivery: {{ delivery_date }}"
            ),
            html=(
                "<p>Your order <strong>#{{ order_id }}</strong> for ${{ amount }} has been"
                " confirmed.</p><p>Expected delivery: {{ delivery_date }}</p>"
            ),
            sms="Order #{{ order_id }} confirmed: ${{ amount }}, arriving {{ delivery_date }}.",
        ),
        sample_data={"order_id": "ORD-1", "amount": "1.00", "delivery_date": "2024-01-01"},
    ),
    TemplateDefinition(
        id="security_alert",
        name="Security Alert",
        category="security",
        channels=[Channel.EMAIL, Channel.SMS, Channel.PUSH],
        default_priority=Priority.CRITICAL,
        content=TemplateContent(
            subject="Security Alert: {{ alert_type }}",
            text=(
                "We detected {{ alert_type }} on your account at {{ timestamp }}."
                " If this wasn't you, please secure your account immediately."
            ),
        ),
        sample_data={"alert_type": "a new login", "timestamp": "2024-01-01 00:00:00 UTC"},
    ),
]

WELCOME_DATA = {"app_name": "MyApp", "user_name": "John"}
ORDER_DATA = {"order_id": "ORD-12345", "amount": "99.99", "delivery_date": "2024-01-15"}
SECURITY_DATA = {"alert_type": "suspicious login attempt", "timestamp": "2024-01-10 14:30:00 UTC"}
BULK_WELCOME_DATA = {"app_name": "MyApp", "user_name": "Valued Customer"}


async def seed_demo_data(tidings: Tidings, *, webhook_base: str | None = None) -> None:
    """Register the prototype's demo templates through the client, and its users with their
    preferences and devices when they do not exist yet (so later edits are kept)."""
    created: set[str] = set()
    for user in USERS:
        with contextlib.suppress(NotFound):
            await tidings.get_user(user.id)
            continue
        fields = user.model_dump()
        if webhook_base:
            fields["webhook_url"] = f"{webhook_base}/users/{user.id}"
        await tidings.upsert_user(fields)
        created.add(user.id)
    for prefs in PREFERENCES:
        if prefs.user_id in created:
            await tidings.set_preferences(prefs)
    for device in DEVICES:
        if device.user_id in created:
            await tidings.add_device(device)
    for definition in TEMPLATES:
        template = await tidings.register_template(definition)
        log.info("demo template %s is at v%d", template.id, template.version)
