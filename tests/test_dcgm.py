"""The ctypes binding of libdcgm: struct layouts, value decoding, library loading.

Sizes and version words are DCGM's (dcgm_structs.h of DCGM 4.6.0, NVIDIA/DCGM 72fa3fe):
``MAKE_DCGM_VERSION(type, ver) = sizeof(type) | ver << 24``; dcgmConnectV2Params_v2 is four
unsigned ints, dcgmFieldValue_v2 4128 bytes. The calls themselves are exercised against the
simulator's stub engine in tests/test_dcgm_engine.py.
"""

from __future__ import annotations

import ctypes

import pytest

from gpu_exporter import dcgm


def test_version_words_match_the_struct_sizes() -> None:
    dcgm.check_layout()  # also run at import
    assert dcgm.CONNECT_PARAMS_VERSION == 0x02000010
    assert dcgm.FIELD_VALUE_VERSION == 0x02001020
    assert ctypes.sizeof(dcgm._FieldValueV2) == 4128
    assert ctypes.sizeof(dcgm._ConnectParams) == 16
    assert ctypes.sizeof(dcgm._EntityPair) == 8
    # 32 GPUs x 14 instances of (8 + 8 + 128 + 5 * 4) bytes, after version and count
    assert ctypes.sizeof(dcgm._MigHierarchyV2) == 8 + 32 * 14 * 164
    assert dcgm.make_version(8 + 32 * 14 * 164, 2) == dcgm.MIG_HIERARCHY_VERSION
    # 16 bytes of header, 10 groups of (2 + 2 + 4 + 64 * 2) bytes
    assert dcgm.make_version(16 + 10 * 136, 3) == dcgm.PROF_METRIC_GROUPS_VERSION


def test_field_value_v2_offsets() -> None:
    layout = {name: getattr(dcgm._FieldValueV2, name).offset
              for name, _ in dcgm._FieldValueV2._fields_}
    assert layout == {"version": 0, "entityGroupId": 4, "entityId": 8, "fieldId": 12,
                      "fieldType": 14, "status": 16, "unused": 20, "ts": 24, "value": 32}


def test_a_wrong_layout_fails_the_import_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcgm, "_LAYOUT", ((dcgm._ConnectParams, 2, 0x02000014),))
    with pytest.raises(ImportError, match="0x2000014"):
        dcgm.check_layout()


D, INT, S, T = dcgm.FT_DOUBLE, dcgm.FT_INT64, dcgm.FT_STRING, dcgm.FT_TIMESTAMP
B64, BFP = dcgm.INT64_BLANK, dcgm.FP64_BLANK


@pytest.mark.parametrize(("args", "expected"), [
    ((D, 0, 0.874, ""), (0.874, None)),
    ((D, 0, 0.0, ""), (0.0, None)),
    ((D, 0, BFP, ""), (None, "blank")),
    ((D, 0, BFP + 1.0, ""), (None, "not_found")),
    ((D, 0, BFP + 2.0, ""), (None, "not_supported")),
    ((D, 0, BFP + 3.0, ""), (None, "not_permissioned")),
    ((D, 0, BFP * 4, ""), (None, "blank")),
    ((D, 0, float("nan"), ""), (None, "blank")),
    ((INT, 1258291200, 0.0, ""), (1258291200.0, None)),
    ((INT, 0, 0.0, ""), (0.0, None)),
    ((INT, B64, 0.0, ""), (None, "blank")),
    ((INT, B64 + 1, 0.0, ""), (None, "not_found")),
    ((INT, B64 + 2, 0.0, ""), (None, "not_supported")),
    ((INT, B64 + 3, 0.0, ""), (None, "not_permissioned")),
    ((INT, B64 + 9, 0.0, ""), (None, "blank")),
    ((T, 1_700_000_000_000_000, 0.0, ""), (1.7e15, None)),
    ((S, 0, 0.0, "GPU-1234"), ("GPU-1234", None)),
    ((S, 0, 0.0, "<<<NULL>>>"), (None, "blank")),
    ((S, 0, 0.0, "<<<NOT_FOUND>>>"), (None, "not_found")),
    ((S, 0, 0.0, "<<<NOT_SUPPORTED>>>"), (None, "not_supported")),
    ((S, 0, 0.0, "<<<NOT_PERM>>>"), (None, "not_permissioned")),
    ((ord("b"), 0, 0.0, ""), (None, "blank")),
])
def test_decode(args: tuple[int, int, float, str], expected: tuple[object, object]) -> None:
    assert dcgm.decode(*args) == expected


def test_a_missing_library_is_reported_with_the_names_tried(tmp_path: object) -> None:
    with pytest.raises(dcgm.DcgmLibraryNotFound, match=r"/nonexistent/libdcgm\.so\.4"):
        dcgm.load_library("/nonexistent/libdcgm.so.4")


def test_default_names_are_dcgm_4_then_3() -> None:
    assert dcgm.LIBRARY_NAMES == ("libdcgm.so.4", "libdcgm.so.3")


def test_a_library_without_the_calls_is_refused() -> None:
    libc = ctypes.CDLL(None)  # the process itself: no DCGM symbols
    with pytest.raises(dcgm.DcgmLibraryNotFound, match="errorString"):
        dcgm.Dcgm(libc)
