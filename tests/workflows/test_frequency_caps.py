"""Per-user frequency caps, counted in the database at send time (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.support import running_stack
from tidings.frequency import CapPolicy
from tidings.models import DeliveryStatus, NotificationStatus, Priority

WELCOME = {"app_name": "MyApp", "user_name": "Ann"}


async def test_over_the_cap_is_deferred_until_the_window_frees(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path, frequency_caps={"onboarding": 2}) as stack:
        await stack.seed()
        refs = []
        for _ in range(2):
            ref = await stack.tidings.notify(
                user_id="user_001", template_id="welcome", data=WELCOME, channels=["in_app"]
            )
            assert (await stack.tidings.wait_sent(ref.notification_id)).status == "sent"
            refs.append(ref)
        third = await stack.tidings.notify(
            user_id="user_001", template_id="welcome", data=WELCOME, channels=["in_app"]
        )
        status = await stack.tidings.wait_sent(third.notification_id, within=5)
        assert status.status is NotificationStatus.SCHEDULED
        assert "frequency cap: 2 'onboarding' notifications" in (status.reason or "")
        assert status.send_at is not None

        critical = await stack.tidings.notify(
            user_id="user_001",
            template_id="welcome",
            data=WELCOME,
            channels=["in_app"],
            priority=Priority.CRITICAL,
        )
        assert (await stack.tidings.wait_sent(critical.notification_id)).status == "sent"

        await time_env.sleep(timedelta(hours=1, minutes=1))
        sent = await stack.tidings.wait_sent(third.notification_id)
        assert sent.status is NotificationStatus.SENT
        assert sent.reason is None
        assert len(await stack.tidings.inbox("user_001")) == 4


async def test_over_the_cap_is_suppressed_by_policy(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(
        time_env.client,
        tmp_path,
        frequency_caps={"*": 1},
        frequency_cap_policy=CapPolicy.SUPPRESS,
    ) as stack:
        await stack.seed()
        first = await stack.tidings.notify(
            user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app"]
        )
        assert (await stack.tidings.wait_sent(first.notification_id)).status == "sent"
        other_user = await stack.tidings.notify(
            user_id="user_001", template_id="welcome", data=WELCOME, channels=["in_app"]
        )
        assert (await stack.tidings.wait_sent(other_user.notification_id)).status == "sent"
        second = await stack.tidings.notify(
            user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app", "email"]
        )
        result = await stack.tidings.wait_sent(second.notification_id)
        assert result.status is NotificationStatus.SUPPRESSED
        assert {c.status for c in result.channels} == {DeliveryStatus.SUPPRESSED}
        assert all("frequency cap" in (c.reason or "") for c in result.channels)
        assert stack.sink.messages == []
        stored = await stack.store.get_notification(second.notification_id)
        assert stored is not None and stored.status is NotificationStatus.SUPPRESSED
