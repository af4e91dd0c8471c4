"""The one data converter: every client, worker, test environment, replayer and benchmark uses
`DATA_CONVERTER`, or `data_converter(settings)` which is the same converter with the payload
encryption codec (`workflows.codec`) when TIDINGS_PAYLOAD_KEYS (or, outside production, the key file
`tidings dev` writes) provides keys. `workflows.connect.connect` uses the latter, so every client
and worker built from settings encrypts; test environments and the replayer without keys see
plaintext, and a converter with keys still reads plaintext payloads.

It is temporalio's pydantic converter with two changes. Payloads are validated with the context
that tells `tidings.models.Model` it is reading a Temporal payload, so a field it does not know
(added by a newer client or worker during a rolling deploy) is dropped instead of failing the
workflow task forever. Callers' input stays strict: that is validated without this context. And a
payload that still cannot be decoded (nested past the parser's limit, a type that changed) ends
the run as failed with the reason, instead of a workflow task that retries forever.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.exceptions import ApplicationError

from tidings.models import PAYLOAD_CONTEXT
from tidings.payload_keys import PayloadKey, parse_keys
from tidings.settings import DEV_PAYLOAD_KEY_FILE, Settings
from workflows.codec import EncryptionCodec

_CONTEXT = {PAYLOAD_CONTEXT: True}
UNDECODABLE = "UndecodablePayload"


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    more = error.error_count() - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")


@functools.lru_cache(maxsize=1024)
def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class LenientJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """Encodes as temporalio's pydantic converter does; decodes in the payload context."""

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint: Any = type_hint if type_hint is not None else Any
        try:
            adapter = _adapter(hint)
        except TypeError:
            if _hashable(hint):  # the TypeError came from building the adapter
                raise
            adapter = TypeAdapter(hint)  # an unhashable hint bypasses the cache
        try:
            return adapter.validate_json(payload.data, context=_CONTEXT)
        except ValidationError as e:
            # An error that is not a FailureError fails the workflow task, and the task retries
            # forever on a payload that will never decode. As an ApplicationError it fails the
            # run (or the activity, the update) once, with the reason.
            raise ApplicationError(
                f"cannot decode {_name(hint)}: {_first_error(e)}",
                type=UNDECODABLE,
                non_retryable=True,
            ) from e


class PayloadConverter(PydanticPayloadConverter):
    def __init__(self) -> None:  # nullary: temporalio rebuilds it per serialization context
        CompositePayloadConverter.__init__(
            self,
            *(
                LenientJSONPayloadConverter() if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            ),
        )


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)


def with_keys(keys: Sequence[PayloadKey]) -> DataConverter:
    """DATA_CONVERTER with payloads encrypted under `keys` (the first encrypts). Failure messages
    and stack traces move into an encoded attribute too: they can quote personal data."""
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def payload_keys(settings: Settings) -> list[PayloadKey] | None:
    """The configured keys: TIDINGS_PAYLOAD_KEYS, else (outside production, which requires the
    setting) the file that `tidings dev` keeps under the data directory, else None."""
    if settings.payload_keys is not None:
        return parse_keys(settings.payload_keys.get_secret_value())
    path = settings.data_dir / DEV_PAYLOAD_KEY_FILE
    if settings.environment != "production" and path.exists():
        return parse_keys(path.read_text(encoding="utf-8"))
    return None


def data_converter(settings: Settings) -> DataConverter:
    keys = payload_keys(settings)
    return DATA_CONVERTER if keys is None else with_keys(keys)
