"""TIDINGS_PAYLOAD_KEYS: the AES-256 keys of the payload codec (workflows.codec), parsed here so
Settings can refuse a malformed value at start-up. Pure; no temporalio."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PayloadKeyError(ValueError):
    """TIDINGS_PAYLOAD_KEYS is malformed, or a payload names a key that is not configured."""


@dataclass(frozen=True)
class PayloadKey:
    id: str
    key: bytes


def parse_keys(text: str) -> list[PayloadKey]:
    """`id:base64key[,id:base64key...]`, each key 32 bytes (AES-256); the first encrypts."""
    keys: list[PayloadKey] = []
    for n, entry in enumerate(e.strip() for e in text.split(",") if e.strip()):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID_PATTERN.match(key_id):
            raise PayloadKeyError(f"entry {n + 1}: expected id:base64key (id of [A-Za-z0-9_.-])")
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error as e:
            raise PayloadKeyError(f"key {key_id!r}: not base64") from e
        if len(raw) != 32:
            raise PayloadKeyError(f"key {key_id!r}: {len(raw)} bytes, AES-256 needs 32")
        if any(k.id == key_id for k in keys):
            raise PayloadKeyError(f"key id {key_id!r} appears twice")
        keys.append(PayloadKey(key_id, raw))
    if not keys:
        raise PayloadKeyError("no key given")
    return keys


def new_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for TIDINGS_PAYLOAD_KEYS."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
