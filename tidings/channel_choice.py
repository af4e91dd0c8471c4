"""Channel recommendation: the order of a template's channels for one user, by their engagement.

Applies only when the request names no channels and the user states no preference for this
template (no on/off switch for any of its channels, globally, for its category or for the
template): then the routed channels are ordered by the user's engagement rate on each channel
(notifications sent on it that were opened or clicked on it, last `HISTORY` days), the template's
order breaking ties. The order is only trusted when every channel has at least `MIN_SENDS` sends;
otherwise the template's order stands. Either way the reason is recorded on the result.

Channels are still delivered in parallel; the order is the order they are planned, started and
shown in, and the one a caller can read the user's best channel from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from tidings.models import Channel, Preferences, TemplateDefinition

MIN_SENDS = 5
HISTORY = timedelta(days=90)


@dataclass(frozen=True)
class ChannelEngagement:
    sends: int  # notifications sent or delivered on the channel
    engaged: int  # of those, opened or clicked on the channel

    @property
    def rate(self) -> float:
        return self.engaged / self.sends if self.sends else 0.0


def states_preference(preferences: Preferences, template: TemplateDefinition) -> bool:
    """Whether any of the user's switches names one of the template's channels."""
    layers = (
        preferences.channels,
        preferences.categories.get(template.category, {}),
        preferences.templates.get(template.id, {}),
    )
    return any(channel in layer for layer in layers for channel in template.channels)


def recommend(
    channels: Sequence[Channel], engagement: Mapping[Channel, ChannelEngagement]
) -> tuple[list[Channel], str]:
    """`channels` (in the template's order) ordered by engagement rate, and why."""
    ordered = list(channels)
    if len(ordered) < 2:
        return ordered, "the only channel"
    thin = [c for c in ordered if engagement.get(c, ChannelEngagement(0, 0)).sends < MIN_SENDS]
    if thin:
        counts = ", ".join(
            f"{c.value} {engagement.get(c, ChannelEngagement(0, 0)).sends}" for c in thin
        )
        return ordered, f"template order: too few sends to rank ({counts}; {MIN_SENDS} needed)"
    position = {c: i for i, c in enumerate(ordered)}
    ordered.sort(key=lambda c: (-engagement[c].rate, position[c]))
    rates = ", ".join(f"{c.value} {engagement[c].engaged}/{engagement[c].sends}" for c in ordered)
    return ordered, f"ordered by the user's engagement: {rates}"
