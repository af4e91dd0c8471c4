"""Contracts survive a rolling deploy: a payload written by a newer version, carrying fields this
version does not know, decodes through the one data converter; callers' input stays strict."""

from __future__ import annotations

import json
from types import ModuleType

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload

from activities import io as activities_io
from tidings import receipts
from tidings.models import Model, NotificationRequest, Priority, TemplateDefinition
from workflows import io as workflows_io
from workflows.converter import DATA_CONVERTER
from workflows.io import EngagementSignal, NotificationInput, RescheduleInput


def _payload(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def _decode(value: object, type_hint: type) -> object:
    (decoded,) = DATA_CONVERTER.payload_converter.from_payloads([_payload(value)], [type_hint])
    return decoded


FUTURE_INPUT = {
    "notification_id": "n-1",
    "template_version": 3,
    "priority": "high",
    "experiment_id": "exp-7",  # top level: a field a newer client adds
    "request": {
        "user_id": "u1",
        "template_id": "welcome",
        "data": {"name": "Ada", "experiment_id": "data keeps its keys"},
        "scheduled_at": "2026-12-01T09:00:00+01:00",
        "experiment_id": "exp-7",  # nested in a strict domain model
        "variant": {"arm": "B"},
    },
}


def test_a_notification_input_from_a_newer_version_decodes() -> None:
    decoded = _decode(FUTURE_INPUT, NotificationInput)
    assert isinstance(decoded, NotificationInput)
    assert decoded.priority is Priority.HIGH
    assert decoded.request.user_id == "u1"
    # Free-form data is the caller's, not a contract: its keys are kept as sent.
    assert decoded.request.data["experiment_id"] == "data keeps its keys"
    assert "experiment_id" not in decoded.request.model_dump()


def test_signal_and_update_arguments_from_a_newer_version_decode() -> None:
    signal = _decode({"type": "opened", "client_event_id": "e1"}, EngagementSignal)
    assert isinstance(signal, EngagementSignal)
    update = _decode({"at": "2026-12-01T09:00:00Z", "reason": "later"}, RescheduleInput)
    assert isinstance(update, RescheduleInput)


def test_the_converter_round_trips_what_it_encodes() -> None:
    value = NotificationInput.model_validate(
        {**FUTURE_INPUT, "request": {"user_id": "u1", "template_id": "welcome"}}
    )
    (payload,) = DATA_CONVERTER.payload_converter.to_payloads([value])
    (back,) = DATA_CONVERTER.payload_converter.from_payloads([payload], [NotificationInput])
    assert back == value


def test_the_payload_context_still_validates_the_known_fields() -> None:
    bad = {**FUTURE_INPUT, "request": {**FUTURE_INPUT["request"], "user_id": "not ok"}}  # type: ignore[dict-item]
    with pytest.raises(Exception, match="user_id"):
        _decode(bad, NotificationInput)


@pytest.mark.parametrize("model", [NotificationRequest, TemplateDefinition])
def test_the_edge_still_refuses_unknown_fields(model: type[NotificationRequest]) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate({"experiment_id": "exp-7"})
    assert ("experiment_id",) in [err["loc"] for err in e.value.errors()]


@pytest.mark.parametrize("module", [workflows_io, activities_io, receipts])
def test_every_wire_model_tolerates_unknown_fields(module: ModuleType) -> None:
    """A guard for models added later: a wire contract either ignores unknown fields or is a
    domain Model, which drops them when decoded through the converter."""
    models = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and cls.__module__ == module.__name__
    ]
    assert models
    for cls in models:
        lenient = cls.model_config.get("extra") in (None, "ignore")
        assert lenient or issubclass(cls, Model), f"{cls.__name__} refuses unknown fields"


def test_a_receipt_signal_from_a_newer_version_decodes() -> None:
    receipt = {
        "notification_id": "n-1",
        "channel": "sms",
        "provider_message_id": "SM1",
        "status": "delivered",
        "carrier": "new field",
    }
    assert isinstance(_decode(receipt, receipts.DeliveryReceipt), receipts.DeliveryReceipt)
