"""A channel's rate limit is enforced by the Temporal server on its task queue."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.support import running_stack
from tidings.models import Channel


async def test_deliveries_on_a_limited_channel_are_spaced_out(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Email, to the stack's SMTP sink: a channel with a provider to protect (in_app has none and
    # cannot be limited).
    async with running_stack(
        dev_env.client, tmp_path, channel_rate_limits={Channel.EMAIL: 2.0}
    ) as stack:
        await stack.seed()
        refs = await stack.tidings.notify_many(
            [f"user_00{i}" for i in (1, 2)],
            "welcome",
            data={"app_name": "A", "user_name": "B"},
            channels=["email"],
        )
        more = [
            await stack.tidings.notify(
                user_id="user_001",
                template_id="welcome",
                data={"app_name": "A", "user_name": str(i)},
                channels=["email"],
            )
            for i in range(4)
        ]
        times = []
        for ref in [*refs.refs, *more]:
            result = await stack.tidings.wait_sent(ref.notification_id, within=60)
            [email] = [c for c in result.channels if c.channel is Channel.EMAIL]
            assert email.at is not None
            times.append(email.at)
        # Six deliveries at two per second cannot all fit in less than two seconds: this bounds
        # the spacing from below, which only the limit can cause, and never asserts speed.
        assert (max(times) - min(times)).total_seconds() >= 2.0
        assert len(stack.sink.messages) == 6
