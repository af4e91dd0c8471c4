"""The experiments tables and the per-variant counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tidings.experiments import ArmCounts
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Priority,
)
from tidings.store import Store

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def _notification(
    store: Store,
    nid: str,
    variant: str,
    status: DeliveryStatus,
    *,
    experiment: str = "exp1",
    engaged: list[tuple[EngagementType, timedelta]] | None = None,
) -> None:
    await store.upsert_notification(
        notification_id=nid,
        user_id="ada",
        template_id="welcome",
        template_version=1,
        priority=Priority.MEDIUM,
        status=NotificationStatus.SENT,
        channels=[
            ChannelResult(channel=Channel.EMAIL, status=status, at=T0),
            # A later second channel does not move the delivery time.
            ChannelResult(channel=Channel.IN_APP, status=status, at=T0 + timedelta(hours=5)),
        ],
        experiment_id=experiment,
        variant=variant,
    )
    for kind, after in engaged or []:
        await store.record_engagement(
            EngagementEvent(notification_id=nid, type=kind, at=T0 + after)
        )


async def test_counts_per_variant_within_the_attribution_window(store: Store) -> None:
    assert await store.create_experiment("exp1", {"id": "exp1"})
    hour = timedelta(hours=1)
    converted = EngagementType.CONVERTED
    await _notification(store, "a1", "a", DeliveryStatus.SENT, engaged=[(converted, hour)])
    await _notification(store, "a2", "a", DeliveryStatus.DELIVERED)
    await _notification(store, "a3", "a", DeliveryStatus.FAILED, engaged=[(converted, hour)])
    # Converted after the 24 h window: delivered, not reached.
    await _notification(store, "b1", "b", DeliveryStatus.SENT, engaged=[(converted, 30 * hour)])
    # Opened and clicked and converted: reached once.
    await _notification(
        store,
        "b2",
        "b",
        DeliveryStatus.SENT,
        engaged=[(EngagementType.OPENED, hour), (EngagementType.CLICKED, 2 * hour),
                 (converted, 3 * hour)],
    )  # fmt: skip
    await _notification(store, "other", "a", DeliveryStatus.SENT, experiment="exp2")

    counts = await store.experiment_counts(
        "exp1", engagement_types=("converted",), window=timedelta(hours=24)
    )
    assert counts == {
        "a": ArmCounts(delivered=2, reached=1),
        "b": ArmCounts(delivered=2, reached=1),
    }
    opened = await store.experiment_counts(
        "exp1", engagement_types=("opened", "clicked"), window=timedelta(minutes=90)
    )
    assert opened == {
        "a": ArmCounts(delivered=2, reached=0),
        "b": ArmCounts(delivered=2, reached=1),
    }
    assert (
        await store.experiment_counts(
            "none", engagement_types=("converted",), window=timedelta(hours=1)
        )
        == {}
    )


async def test_first_enrolment_wins(store: Store) -> None:
    await store.create_experiment("exp1", {"id": "exp1"})
    first = await store.claim_enrolment(
        experiment_id="exp1", user_id="ada", variant="b", notification_id="n1", claim_id="u1"
    )
    assert first.first and first.variant == "b"
    again = await store.claim_enrolment(
        experiment_id="exp1", user_id="ada", variant="a", notification_id="n2", claim_id="u2"
    )
    assert not again.first and (again.variant, again.notification_id) == ("b", "n1")
    retried = await store.claim_enrolment(
        experiment_id="exp1", user_id="ada", variant="b", notification_id="n1", claim_id="u1"
    )
    assert retried.first
    await store.claim_enrolment(
        experiment_id="exp1", user_id="bob", variant="holdout", notification_id=None, claim_id="u3"
    )
    assert await store.enrolment_counts("exp1") == {"b": 1, "holdout": 1}
    got = await store.get_enrolment("exp1", "bob")
    assert got is not None and got.variant == "holdout" and got.notification_id is None


async def test_experiment_record_and_outcome(store: Store) -> None:
    assert await store.create_experiment("exp1", {"id": "exp1", "metric": "opened"})
    assert not await store.create_experiment("exp1", {"id": "exp1", "metric": "clicked"})
    await store.finish_experiment(
        "exp1", ending="winner", winner="b", reason="b wins", outcome={"b": 1}
    )
    await store.finish_experiment("exp1", ending="stopped", winner=None, reason="x", outcome={})
    got = await store.get_experiment("exp1")
    assert got is not None
    assert (got.status, got.ending, got.winner, got.config["metric"]) == (
        "finished",
        "winner",
        "b",
        "opened",
    )
    assert got.finished_at is not None
    assert [e.id for e in await store.list_experiments()] == ["exp1"]
