"""How many SMS segments a text costs, computed the way carriers split it (3GPP TS 23.038/23.040).

A text made only of GSM 03.38 characters goes as GSM-7: 160 septets in one segment, 153 per
segment once concatenated (the user-data header takes the rest); characters from the extension
table (€ [ ] { } \\ ^ ~ | and form feed) take two septets (escape + code). One character outside
GSM-7 switches the whole message to UCS-2: 70 UTF-16 code units in one segment, 67 when
concatenated; characters outside the Basic Multilingual Plane (most emoji) take two code units.

Encoders never split an escape pair or a surrogate pair across two segments, so segments are
filled greedily with whole characters rather than by dividing a length. Provider-side tricks that
change the count (Twilio's "smart encoding" of look-alike characters) are not assumed: the count
here is what the text costs as written.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _units(text: str, encoding: Encoding) -> list[int]:
    """The cost of each character: septets for GSM-7, UTF-16 code units for UCS-2."""
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def sms_segments(text: str) -> tuple[Encoding, int]:
    """The encoding the text needs and how many segments it takes; an empty text takes none."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    single, multi = _LIMITS[encoding]
    units = _units(text, encoding)
    if not units:
        return encoding, 0
    if sum(units) <= single:
        return encoding, 1
    segments, used = 1, 0
    for cost in units:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return encoding, segments
