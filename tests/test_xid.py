"""XID texts and the operator-action set."""

from __future__ import annotations

import pytest

from gpu_exporter import xid


def test_every_code_from_0_to_172_has_a_text() -> None:
    assert sorted(xid.TEXTS) == list(range(173))
    for code in range(173):
        text = xid.describe(code)
        assert text
        assert text != xid.UNKNOWN
        assert "\n" not in text
        assert text == text.strip()


@pytest.mark.parametrize("code", [-1, 173, 999, 2**31])
def test_unknown_codes(code: int) -> None:
    assert xid.describe(code) == "Unknown XID"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "no error"),
        (13, "graphics engine"),
        (31, "page fault"),
        (48, "double-bit ecc"),
        (63, "row remapping"),
        (74, "nvlink"),
        (79, "fallen off the bus"),
        (92, "single-bit ecc"),
        (94, "contained ecc"),
        (95, "uncontained ecc"),
        (119, "gsp"),
        (140, "ecc"),
        (171, "dram"),
        (172, "sram"),
    ],
)
def test_texts_say_what_the_code_is(code: int, words: str) -> None:
    assert words in xid.describe(code).lower()


def test_action_codes_include_the_well_known_ones() -> None:
    assert {48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140} <= xid.ACTION_XIDS


def test_action_codes_are_catalogued_and_exclude_application_faults() -> None:
    assert set(xid.TEXTS) >= xid.ACTION_XIDS
    # 13, 31 and 43 are usually an application bug; 0 is "no error".
    assert not {0, 13, 31, 43, 45} & xid.ACTION_XIDS
    assert all("Unused" not in xid.describe(c) for c in xid.ACTION_XIDS)
