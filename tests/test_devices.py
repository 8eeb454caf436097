"""The -d/--devices selector grammar (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_exporter.devices import ALL, DeviceSelector, parse_device_selector


@pytest.mark.parametrize(
    ("text", "kind", "ids"),
    [
        ("f", "f", None),
        (" f ", "f", None),
        ("g", "g", None),
        ("i", "i", None),
        ("g:0", "g", {0}),
        ("g:0,2-4", "g", {0, 2, 3, 4}),
        ("i:1-1,7", "i", {1, 7}),
        ("g: 3 , 5 - 6", "g", {3, 5, 6}),
        ("g:2,2,1-2", "g", {1, 2}),
    ],
)
def test_valid_selectors(text: str, kind: str, ids: set[int] | None) -> None:
    selector = parse_device_selector(text)
    assert selector.kind == kind
    assert selector.ids == (None if ids is None else frozenset(ids))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not a device selector"),
        ("x", "not a device selector"),
        ("gpu", "not a device selector"),
        ("f:0", "'f' takes no list"),
        ("g:0,1,i:0", "mixes selectors"),
        ("g+i", "combined selectors 'g[:LIST]+i[:LIST]' (dcgm-exporter 4.6+) are not supported"),
        ("g:0,1+i:0-3", "combined selectors"),
        ("g:", "empty item"),
        ("g:1,,2", "empty item"),
        ("g:a", "mixes selectors"),
        ("g:1.5", "not a number"),
        ("g:4-2", "goes backwards"),
        ("g:-1", "not a number"),
    ],
)
def test_invalid_selectors_name_the_flag(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="-d/--devices") as caught:
        parse_device_selector(text)
    assert fragment in str(caught.value)


def test_custom_flag_name_in_message() -> None:
    with pytest.raises(ValueError, match=r"^DCGM_EXPORTER_DEVICES_STR: "):
        parse_device_selector("q", flag="DCGM_EXPORTER_DEVICES_STR")


def test_selects() -> None:
    assert ALL.selects(42)
    picked = DeviceSelector("g", frozenset({1, 3}))
    assert picked.selects(3)
    assert not picked.selects(2)


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    message = ""
    try:
        selector = parse_device_selector(text)
    except ValueError as exc:
        message = str(exc)
    if message:
        assert message.startswith("-d/--devices: ")
    else:
        assert selector.kind in ("f", "g", "i")


@given(st.sampled_from("gi"), st.lists(st.integers(0, 64), min_size=1, max_size=6))
def test_lists_round_trip(letter: str, ids: list[int]) -> None:
    text = f"{letter}:" + ",".join(map(str, ids))
    assert parse_device_selector(text) == DeviceSelector(letter, frozenset(ids))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["g:0-4294967295", "i:1025", "g:0,5-99999999999999999999"])
def test_huge_ids_are_rejected_before_allocating(text: str) -> None:
    with pytest.raises(ValueError, match=r"^-d/--devices: id \d+ in .* is too large"):
        parse_device_selector(text)


def test_largest_allowed_id() -> None:
    assert parse_device_selector("g:1020-1024").ids == frozenset(range(1020, 1025))


def test_first_missing_names_one_id() -> None:
    assert parse_device_selector("g:0,3,9-12").first_missing(4) == 9
    assert parse_device_selector("g:0-3").first_missing(4) is None
    assert ALL.first_missing(0) is None
