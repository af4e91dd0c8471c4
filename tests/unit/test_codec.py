"""The payload codec: AES-256-GCM with the key id in the metadata, rotation, and plaintext
payloads (histories from before encryption) passed through."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload

from tidings.models import Channel, RenderedMessage
from tidings.payload_keys import PayloadKeyError, new_key_entry, parse_keys
from workflows.codec import ENCODING, KEY_ID, EncryptionCodec
from workflows.converter import DATA_CONVERTER, with_keys

OLD = new_key_entry("k1")
NEW = new_key_entry("k2")
SECRET_TEXT = "Order 4411 for Ada Lovelace, 12 Crescent Road"


def _message() -> RenderedMessage:
    return RenderedMessage(channel=Channel.EMAIL, subject="Hi", text=SECRET_TEXT)


async def test_round_trip_hides_the_plaintext() -> None:
    converter = with_keys(parse_keys(OLD))
    [payload] = await converter.encode([_message()])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == b"k1"
    assert SECRET_TEXT.encode() not in payload.SerializeToString()
    [back] = await converter.decode([payload], [RenderedMessage])
    assert back == _message()


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    [old_payload] = await with_keys(parse_keys(OLD)).encode([_message()])
    rotated = with_keys(parse_keys(f"{NEW},{OLD}"))
    [new_payload] = await rotated.encode([_message()])
    assert new_payload.metadata[KEY_ID] == b"k2"
    assert await rotated.decode([old_payload, new_payload], [RenderedMessage] * 2) == [
        _message(),
        _message(),
    ]
    with pytest.raises(PayloadKeyError, match="'k1', which TIDINGS_PAYLOAD_KEYS lacks"):
        await with_keys(parse_keys(NEW)).decode([old_payload], [RenderedMessage])


async def test_tampered_ciphertext_and_relabelled_key_ids_are_refused() -> None:
    codec = EncryptionCodec(parse_keys(f"{NEW},{OLD}"))
    [plain] = await DATA_CONVERTER.encode([_message()])
    [sealed] = await codec.encode([plain])
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + b"\x00")
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"k1"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(PayloadKeyError, match="fails authentication"):
            await codec.decode([bad])


async def test_plaintext_payloads_pass_through() -> None:
    [plain] = await DATA_CONVERTER.encode([_message()])
    codec = EncryptionCodec(parse_keys(OLD))
    assert await codec.decode([plain]) == [plain]
