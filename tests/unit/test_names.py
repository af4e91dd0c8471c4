"""One name per concept per layer: a reader tells a channel's input, a provider's answer, the
deliver activity's output and a recorded result apart by their names alone."""

from __future__ import annotations

import activities.io
import tidings.channels.base
import tidings.models


def test_each_layer_names_its_send_types() -> None:
    assert {"OutgoingMessage", "ProviderAcceptance"} <= set(vars(tidings.channels.base))
    assert "DeliverOutput" in vars(activities.io)
    assert "ChannelResult" in vars(tidings.models)  # the recorded result, renamed at merge


def test_the_ambiguous_names_are_gone() -> None:
    assert not {"Delivery", "SendOutcome"} & set(vars(tidings.channels.base))
    assert "DeliverResult" not in vars(activities.io)
