"""Channel recommendation (tidings.channel_choice) and where planning applies it."""

from __future__ import annotations

from datetime import UTC, datetime

from tidings.channel_choice import ChannelEngagement, recommend, states_preference
from tidings.frequency import FrequencyCaps
from tidings.models import Channel, Preferences, Priority, Template, TemplateContent, User
from tidings.planning import PlanRequest, plan

EMAIL, PUSH, IN_APP = Channel.EMAIL, Channel.PUSH, Channel.IN_APP
TEMPLATE = Template(
    id="digest",
    version=1,
    category="news",
    channels=[EMAIL, PUSH, IN_APP],
    content=TemplateContent(subject="s", text="t"),
)
USER = User(id="ada", email="ada@example.com")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def e(sends: int, engaged: int) -> ChannelEngagement:
    return ChannelEngagement(sends, engaged)


def test_orders_by_rate_with_the_templates_order_breaking_ties() -> None:
    order, reason = recommend(
        [EMAIL, PUSH, IN_APP], {EMAIL: e(10, 1), PUSH: e(5, 3), IN_APP: e(20, 2)}
    )
    assert order == [PUSH, EMAIL, IN_APP]  # 60%, then 10% and 10%: email first in the template
    assert reason == "ordered by the user's engagement: push 3/5, email 1/10, in_app 2/20"


def test_too_few_sends_on_any_channel_keeps_the_templates_order() -> None:
    order, reason = recommend([EMAIL, PUSH], {EMAIL: e(50, 1), PUSH: e(4, 4)})
    assert order == [EMAIL, PUSH]
    assert reason == "template order: too few sends to rank (push 4; 5 needed)"
    order, reason = recommend([EMAIL, PUSH], {})
    assert order == [EMAIL, PUSH] and "email 0, push 0" in reason


def test_a_switch_for_any_of_the_templates_channels_is_a_stated_preference() -> None:
    assert not states_preference(Preferences(user_id="ada"), TEMPLATE)
    assert not states_preference(
        Preferences(user_id="ada", channels={Channel.SMS: False}), TEMPLATE
    )
    assert states_preference(Preferences(user_id="ada", channels={PUSH: True}), TEMPLATE)
    assert states_preference(
        Preferences(user_id="ada", categories={"news": {EMAIL: False}}), TEMPLATE
    )
    assert states_preference(
        Preferences(user_id="ada", templates={"digest": {IN_APP: True}}), TEMPLATE
    )


def _plan(
    *, requested: list[Channel] | None = None, preferences: Preferences | None = None
) -> tuple[list[Channel], str | None]:
    result = plan(
        request=PlanRequest(
            notification_id="n",
            user_id="ada",
            template_id="digest",
            template_version=1,
            priority=Priority.MEDIUM,
            not_before=NOW,
            requested_channels=requested,
        ),
        user=USER,
        template=TEMPLATE,
        preferences=preferences or Preferences(user_id="ada"),
        has_devices=True,
        configured=set(Channel),
        caps=FrequencyCaps(),
        recent=None,
        engagement={EMAIL: e(10, 0), PUSH: e(10, 2), IN_APP: e(10, 9)},
    )
    return result.channels, result.channel_reason


def test_planning_orders_the_channels_when_nothing_says_otherwise() -> None:
    channels, reason = _plan()
    assert channels == [IN_APP, PUSH, EMAIL]
    assert reason is not None and reason.startswith("ordered by the user's engagement")


def test_requested_channels_are_kept_as_given() -> None:
    assert _plan(requested=[EMAIL, PUSH]) == ([EMAIL, PUSH], None)


def test_a_user_with_preferences_keeps_the_templates_order() -> None:
    channels, reason = _plan(preferences=Preferences(user_id="ada", channels={PUSH: True}))
    assert channels == [EMAIL, PUSH, IN_APP]
    assert reason == "template order: the user has set channel preferences"
