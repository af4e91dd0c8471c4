"""Payload encryption: AES-256-GCM over every payload that crosses Temporal.

Workflow and activity inputs and results, signals, updates, queries, memos and summaries go
through a `PayloadCodec` before they reach the server, so the server's history holds ciphertext
and not the names, addresses and template data inside them. Search attributes are not encoded by
codecs (Temporal indexes them): they carry ids and states, never personal data.

An encrypted payload is `nonce (12 bytes) || ciphertext+tag` over the serialized original
payload, with metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`; the key id is
also authenticated (GCM associated data). Keys come from TIDINGS_PAYLOAD_KEYS as
`id:base64key[,id:base64key...]`: the first encrypts, every one decrypts, so a key is rotated by
putting a new one first and removing the old one once no open run or kept history needs it.
Payloads without the encrypted encoding (histories from before the codec) pass through as they
are, which is what keeps the recorded replay histories working.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from tidings.payload_keys import PayloadKey, PayloadKeyError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[PayloadKey]) -> None:
        if not keys:
            raise PayloadKeyError("no key given")
        self._current = keys[0]
        self._ciphers = {k.id: AESGCM(k.key) for k in keys}

    @property
    def key_id(self) -> str:
        return self._current.id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current.id]
        key_id = self._current.id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key_id},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was on
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise PayloadKeyError(
                    f"payload encrypted with key {key_id!r}, which TIDINGS_PAYLOAD_KEYS lacks"
                )
            nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            try:
                plain = cipher.decrypt(nonce, sealed, key_id.encode())
            except InvalidTag as e:
                raise PayloadKeyError(f"payload under key {key_id!r} fails authentication") from e
            decoded.append(Payload.FromString(plain))
        return decoded
