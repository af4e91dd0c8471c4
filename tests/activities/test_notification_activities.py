"""NotificationActivities in ActivityEnvironment: each activity calls the domain and maps its typed
errors to ApplicationError with the wire-contract type names, retry flags and delays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import NOT_FOUND, PERMANENT, RATE_LIMITED, TEMPLATE, TRANSIENT
from activities.io import DeliverInput, DeliverOutput, PlanInput, PlanResult, RecordInput
from activities.notification import NotificationActivities
from tests.activities.conftest import activity_env
from tests.fakes import ACCEPTED, RecordingSender
from tests.store.test_inbox_send import ledger_fails, statements
from tidings.channels.base import PermanentChannelError, RateLimitedError, TransientChannelError
from tidings.channels.in_app import InAppSender
from tidings.models import (
    Channel,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Priority,
)
from tidings.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def deliver_input(**overrides: object) -> DeliverInput:
    return DeliverInput.model_validate(
        {
            "notification_id": "n-1",
            "channel": "email",
            "user_id": "ada",
            "template_id": "hello",
            "template_version": 1,
            "data": {"name": "Ada"},
            **overrides,
        }
    )


def plan_input(**overrides: object) -> PlanInput:
    return PlanInput.model_validate(
        {
            "notification_id": "n-1",
            "user_id": "ada",
            "template_id": "hello",
            "template_version": 1,
            "priority": "medium",
            "not_before": NOW,
            **overrides,
        }
    )


def test_registered_names_are_unchanged() -> None:
    """Activity names are wire contracts: recorded histories and running workflows use them."""
    names = {
        getattr(NotificationActivities, m).__temporal_activity_definition.name
        for m in ("deliver", "plan_delivery", "record_notification", "record_engagement")
    }
    assert names == {"deliver", "plan_delivery", "record_notification", "record_engagement"}


async def test_deliver_reports_the_acceptance_and_the_attempt(
    store: Store, sender: RecordingSender
) -> None:
    activities = NotificationActivities(store, {Channel.EMAIL: sender})
    out = await activity_env(attempt=3).run(activities.deliver, deliver_input())
    assert out == DeliverOutput(status=ACCEPTED.status, target=ACCEPTED.target, attempt=3)
    again = await activity_env(attempt=4).run(activities.deliver, deliver_input())
    assert (again.duplicate, again.attempt, len(sender.sent)) == (True, 4, 1)


async def _deliver_error(
    store: Store, sender: RecordingSender, input: DeliverInput | None = None
) -> ApplicationError:
    activities = NotificationActivities(store, {Channel.EMAIL: sender})
    with pytest.raises(ApplicationError) as raised:
        await activity_env(attempt=2).run(activities.deliver, input or deliver_input())
    return raised.value


@pytest.mark.parametrize(
    ("error", "type", "non_retryable"),
    [
        (PermanentChannelError("mailbox does not exist"), PERMANENT, True),
        (TransientChannelError("HTTP 503"), TRANSIENT, False),
        (RateLimitedError("HTTP 429"), RATE_LIMITED, False),
    ],
)
async def test_provider_errors_map_to_their_wire_type(
    store: Store, error: Exception, type: str, non_retryable: bool
) -> None:
    raised = await _deliver_error(store, RecordingSender(script=[error]))
    assert (raised.type, raised.non_retryable, raised.message) == (
        type,
        non_retryable,
        str(error),
    )
    assert raised.__cause__ is error  # chained: the original is kept for whoever debugs it
    assert raised.next_retry_delay is None


async def test_rate_limited_retries_after_the_providers_delay(store: Store) -> None:
    sender = RecordingSender(script=[RateLimitedError("HTTP 429", retry_after=7.5)])
    raised = await _deliver_error(store, sender)
    assert raised.type == RATE_LIMITED
    assert raised.next_retry_delay == timedelta(seconds=7.5)
    assert not raised.non_retryable


@pytest.mark.parametrize(
    ("overrides", "type", "message"),
    [
        ({"expires_at": NOW}, PERMANENT, "expired before it could be delivered"),
        ({"channel": "sms"}, PERMANENT, "no sms provider is configured"),
        ({"data": {}}, TEMPLATE, "name"),
        ({"user_id": "gone"}, NOT_FOUND, "user 'gone' not found"),
        ({"template_version": 9}, NOT_FOUND, "template"),
    ],
)
async def test_send_protocol_refusals_are_non_retryable(
    store: Store, sender: RecordingSender, overrides: dict[str, object], type: str, message: str
) -> None:
    raised = await _deliver_error(store, sender, deliver_input(**overrides))
    assert (raised.type, raised.non_retryable) == (type, True)
    assert message in raised.message
    assert sender.sent == []


async def test_an_unclassified_error_is_raised_as_is(store: Store) -> None:
    """Nobody classified it: Temporal retries it and the SDK logs its traceback."""
    activities = NotificationActivities(
        store, {Channel.EMAIL: RecordingSender(script=[KeyError("token")])}
    )
    with pytest.raises(KeyError):
        await activity_env().run(activities.deliver, deliver_input())


async def test_plan_delivery_maps_the_plan_to_its_wire_result(
    store: Store, sender: RecordingSender
) -> None:
    activities = NotificationActivities(store, {Channel.EMAIL: sender})
    result = await activity_env().run(
        activities.plan_delivery, plan_input(fallback_channels=["in_app", "email"])
    )
    assert result == PlanResult(
        channels=[Channel.EMAIL],
        suppressed={Channel.IN_APP: "no in_app provider is configured"},
        send_at=NOW,
    )


async def test_plan_delivery_for_a_deleted_user_is_not_found(
    store: Store, sender: RecordingSender
) -> None:
    activities = NotificationActivities(store, {Channel.EMAIL: sender})
    with pytest.raises(ApplicationError) as raised:
        await activity_env().run(activities.plan_delivery, plan_input(user_id="gone"))
    assert (raised.value.type, raised.value.non_retryable) == (NOT_FOUND, True)


async def test_record_activities_write_through_to_the_store(
    store: Store, sender: RecordingSender
) -> None:
    activities = NotificationActivities(store, {Channel.EMAIL: sender})
    await activity_env().run(
        activities.record_notification,
        RecordInput(
            notification_id="n-1",
            user_id="ada",
            template_id="hello",
            template_version=1,
            priority=Priority.MEDIUM,
            status=NotificationStatus.SCHEDULED,
        ),
    )
    recorded = await store.get_notification("n-1")
    assert recorded is not None and recorded.status is NotificationStatus.SCHEDULED
    event = EngagementEvent(
        notification_id="n-1", type=EngagementType.OPENED, channel=Channel.EMAIL, at=NOW
    )
    assert await activity_env().run(activities.record_engagement, event) is True


async def test_deliver_heartbeats_while_the_send_is_in_progress(store: Store) -> None:
    """So a dead worker's send is retried after the heartbeat timeout, not the attempt timeout."""
    beats: list[float] = []
    sender = RecordingSender(delay=0.45)
    activities = NotificationActivities(store, {Channel.EMAIL: sender}, heartbeat_every=0.1)
    env = activity_env()
    env.on_heartbeat = lambda *details: beats.append(asyncio.get_running_loop().time())
    await env.run(activities.deliver, deliver_input())
    assert len(beats) >= 3  # 0.45 s at one beat per 0.1 s, the first after 0.1 s
    count = len(beats)
    await asyncio.sleep(0.25)
    assert len(beats) == count  # and it stops with the send


def plan_sending_in_app() -> PlanInput:
    """A plan on the v11 path (IN_APP_WITH_PLAN_PATCH): it records, and delivers in-app itself."""
    in_app = deliver_input(channel="in_app", record=True, finish=True, scheduled_at=NOW)
    return plan_input(
        requested_channels=["email", "in_app"], record={}, in_app=in_app.model_dump(mode="json")
    )


async def _channels(store: Store) -> dict[Channel, DeliveryStatus]:
    stored = await store.get_notification("n-1")
    assert stored is not None
    return {c.channel: c.status for c in stored.channels}


async def test_the_plan_delivers_in_app_once_even_when_it_runs_again(
    store: Store, sender: RecordingSender
) -> None:
    """The plan records both channels `sending` and delivers in-app in the same activity. Run
    again (its worker died before the run heard: a local activity starts over), it finds the
    ledger entry: nothing is sent twice, and the in-app row its record set back to `sending` is
    put back as it was, with no final status claimed (the run writes it)."""
    in_app = RecordingSender(channel=Channel.IN_APP)
    activities = NotificationActivities(store, {Channel.EMAIL: sender, Channel.IN_APP: in_app})
    first = await activity_env().run(activities.plan_delivery, plan_sending_in_app())
    assert set(first.channels) == {Channel.EMAIL, Channel.IN_APP}
    assert first.in_app is not None and not first.in_app.duplicate
    assert (first.in_app.status, first.in_app.attempt) == (ACCEPTED.status, 1)
    landed = {Channel.EMAIL: DeliveryStatus.SENDING, Channel.IN_APP: ACCEPTED.status}
    assert await _channels(store) == landed
    again = await activity_env().run(activities.plan_delivery, plan_sending_in_app())
    assert again.in_app is not None and again.in_app.duplicate
    assert again.in_app.final_status is None
    assert len(in_app.sent) == 1
    assert await _channels(store) == landed


async def test_a_plan_whose_in_app_send_fails_leaves_it_to_the_run(
    store: Store, sender: RecordingSender
) -> None:
    """The plan's result stands when its in-app attempt raises: no in-app result, the row still
    `sending`, and the run sends in-app by its own local activity with the channel's retries."""
    in_app = RecordingSender(channel=Channel.IN_APP, script=[TransientChannelError("down")])
    activities = NotificationActivities(store, {Channel.EMAIL: sender, Channel.IN_APP: in_app})
    result = await activity_env().run(activities.plan_delivery, plan_sending_in_app())
    assert set(result.channels) == {Channel.EMAIL, Channel.IN_APP} and result.in_app is None
    assert len(in_app.sent) == 1
    assert (await _channels(store))[Channel.IN_APP] is DeliveryStatus.SENDING


async def test_a_send_shorter_than_a_beat_sends_no_heartbeat(store: Store) -> None:
    """The first beat comes after one interval: a quick send costs the server no heartbeat."""
    beats: list[object] = []
    activities = NotificationActivities(
        store, {Channel.EMAIL: RecordingSender()}, heartbeat_every=0.5
    )
    env = activity_env()
    env.on_heartbeat = lambda *details: beats.append(details)
    await env.run(activities.deliver, deliver_input(notification_id="n-quick"))
    assert beats == []


async def test_the_plans_in_app_send_asks_for_the_final_status_only_when_alone(
    store: Store, sender: RecordingSender
) -> None:
    """With email planned too, in-app cannot land last (email's delivery starts after the plan):
    its transaction runs no final-status update, and the email's, landing last, writes it. On
    in-app alone, the plan's in-app send writes it."""
    activities = NotificationActivities(
        store, {Channel.EMAIL: sender, Channel.IN_APP: InAppSender(store)}
    )
    with statements(store) as sent:
        result = await activity_env().run(activities.plan_delivery, plan_sending_in_app())
    assert result.in_app is not None and result.in_app.final_status is None
    assert not [s for s in sent if s.startswith("UPDATE")]
    assert len(await store.list_inbox("ada")) == 1
    email = deliver_input(record=True, finish=True)
    out = await activity_env().run(activities.deliver, email)
    assert out.final_status is NotificationStatus.SENT

    alone = plan_sending_in_app().model_copy(
        update={"notification_id": "n-2", "requested_channels": [Channel.IN_APP]}
    )
    assert alone.in_app is not None
    alone.in_app.notification_id = "n-2"
    result = await activity_env().run(activities.plan_delivery, alone)
    assert result.channels == [Channel.IN_APP]
    assert result.in_app is not None and result.in_app.final_status is NotificationStatus.SENT
    stored = await store.get_notification("n-2")
    assert stored is not None and stored.status is NotificationStatus.SENT


async def test_a_plans_in_app_send_whose_ledger_write_fails_leaves_no_item(
    store: Store, sender: RecordingSender
) -> None:
    """The item, its ledger entry and its row are one transaction: the ledger refusing leaves
    no item and the row `sending`; the run's own in-app send then delivers it once."""
    activities = NotificationActivities(
        store, {Channel.EMAIL: sender, Channel.IN_APP: InAppSender(store)}
    )
    await ledger_fails(store, True)
    result = await activity_env().run(activities.plan_delivery, plan_sending_in_app())
    assert result.in_app is None
    assert await store.list_inbox("ada") == []
    assert (await _channels(store))[Channel.IN_APP] is DeliveryStatus.SENDING
    await ledger_fails(store, False)
    retry = deliver_input(channel="in_app", record=True, finish=True, scheduled_at=NOW)
    out = await activity_env().run(activities.deliver, retry)
    assert (out.status, out.duplicate) == (DeliveryStatus.DELIVERED, False)
    again = await activity_env(attempt=2).run(activities.deliver, retry)
    assert again.duplicate and again.provider_message_id == out.provider_message_id
    assert len(await store.list_inbox("ada")) == 1
    assert (await _channels(store))[Channel.IN_APP] is DeliveryStatus.DELIVERED
