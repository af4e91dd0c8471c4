"""SMS segment counting at the GSM-7 and UCS-2 boundaries."""

from __future__ import annotations

import pytest

from tidings.channels.sms_segments import GSM7_EXTENSION, is_gsm7, sms_segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0)),
        ("a", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 153 * 2, ("GSM-7", 2)),
        ("a" * (153 * 2 + 1), ("GSM-7", 3)),
        ("a" * 153 * 3, ("GSM-7", 3)),
        ("ж" * 70, ("UCS-2", 1)),
        ("ж" * 71, ("UCS-2", 2)),
        ("ж" * 67 * 2, ("UCS-2", 2)),
        ("ж" * (67 * 2 + 1), ("UCS-2", 3)),
    ],
)
def test_boundaries(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


def test_one_non_gsm_character_switches_the_whole_message_to_ucs2() -> None:
    assert sms_segments("a" * 100) == ("GSM-7", 1)
    assert sms_segments("a" * 99 + "ł") == ("UCS-2", 2)  # 100 code units > 70


def test_gsm_basic_set_accents_stay_gsm7() -> None:
    text = "Café à Zürich, Ñoño? ¡Sì! £5 @ 10% ÆØÅ ΔΦΓΛΩ"
    assert is_gsm7(text)
    assert sms_segments(text) == ("GSM-7", 1)
    # Not every accent is in GSM 03.38: á, í, ó, ú and ç (lower case) are not.
    assert [ch for ch in "áíóúç" if is_gsm7(ch)] == []


@pytest.mark.parametrize("ch", sorted(GSM7_EXTENSION))
def test_extension_characters_cost_two_septets(ch: str) -> None:
    assert sms_segments(ch * 80) == ("GSM-7", 1)  # 160 septets
    assert sms_segments(ch * 80 + "a") == ("GSM-7", 2)


def test_euro_and_brackets_at_the_boundary() -> None:
    assert sms_segments("€" + "a" * 158) == ("GSM-7", 1)
    assert sms_segments("€" + "a" * 159) == ("GSM-7", 2)
    assert sms_segments("[x]" + "a" * 155) == ("GSM-7", 1)  # 2 + 1 + 2 + 155 = 160
    assert sms_segments("[x]" + "a" * 156) == ("GSM-7", 2)


def test_an_escape_pair_is_never_split_across_segments() -> None:
    # 152 plain septets, then €: the pair does not fit in the last septet of segment one.
    assert sms_segments("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3)
    # Counting by length alone would say 2 segments (306 septets).
    assert sms_segments("a" * 151 + "€" + "a" * 153) == ("GSM-7", 2)


def test_astral_characters_take_two_code_units_and_are_not_split() -> None:
    assert sms_segments("🙂" * 35) == ("UCS-2", 1)  # 70 code units
    assert sms_segments("🙂" * 35 + "a") == ("UCS-2", 2)
    # 66 units then a surrogate pair: it starts segment two instead of straddling.
    assert sms_segments("ж" * 66 + "🙂" + "ж" * 66) == ("UCS-2", 3)


def test_newlines_are_gsm7_but_tabs_are_not() -> None:
    assert sms_segments("a\nb\rc") == ("GSM-7", 1)
    assert sms_segments("a\tb") == ("UCS-2", 1)
