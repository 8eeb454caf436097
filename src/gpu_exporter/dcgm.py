"""The one module that talks to DCGM's client library (``libdcgm.so.4``, else ``.so.3``).

Declarations are our own, written from DCGM's public headers (``dcgm_structs.h``,
``dcgm_agent.h``, ``dcgm_fields.h``): only the calls the exporter makes, through ctypes, with
every versioned struct's size checked at import against the version word DCGM expects
(``sizeof | version << 24``), so a layout mistake fails loudly instead of corrupting memory.

The exporter only ever *connects* to a running host engine (``dcgmConnect_v2``): it never
starts an embedded one, because the profiling counters cannot be shared by two profilers on one
machine. This module is imported only when DCGM is asked for (``-r`` or ``--dcgm-local``).

Everything outside sees our own types: :class:`DcgmError` (function, return code and DCGM's
own text), :class:`FieldValue` with the blank sentinels decoded (:func:`decode`), and plain
tuples for metric groups and the MIG hierarchy.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NewType

LIBRARY_NAMES = ("libdcgm.so.4", "libdcgm.so.3")
"""Sonames tried in order: DCGM 4, then DCGM 3 (same ABI for every call made here)."""

DEFAULT_PORT = 5555
"""``DCGM_HE_PORT_NUMBER``: the host engine's TCP port."""
UNIX_PREFIX = "unix://"
"""``DCGM_UNIX_SOCKET_PREFIX``: an address naming the engine's unix socket."""

# return codes (dcgmReturn_t)
ST_OK = 0
ST_NOT_SUPPORTED = -6
ST_NO_DATA = -14
ST_NOT_WATCHED = -16
ST_NO_PERMISSION = -17
ST_CONNECTION_NOT_VALID = -21
ST_REQUIRES_ROOT = -29
ST_MODULE_NOT_LOADED = -33
ST_PROFILING_NOT_SUPPORTED = -36
ST_PROFILING_LIBRARY_ERROR = -37
ST_PROFILING_MULTI_PASS = -38
ST_PAUSED = -54

# entity groups (dcgm_field_entity_group_t)
FE_GPU = 1
FE_GPU_I = 4
FE_GPU_CI = 5

GROUP_EMPTY = 1
"""``DCGM_GROUP_EMPTY``: dcgmGroupCreate makes a group without entities."""

FIELD_UUID = 54
"""``DCGM_FI_DEV_UUID``: how a DCGM GPU id is matched to an NVML GPU."""

# field types (DCGM_FT_*)
FT_DOUBLE = ord("d")
FT_INT64 = ord("i")
FT_STRING = ord("s")
FT_TIMESTAMP = ord("t")

# blank sentinels: a value at or above the base is no value; base + 1/2/3 say why
INT64_BLANK = 0x7FFFFFFFFFFFFFF0
FP64_BLANK = 140737488355328.0
STR_BLANK = "<<<NULL>>>"
STR_NOT_FOUND = "<<<NOT_FOUND>>>"
STR_NOT_SUPPORTED = "<<<NOT_SUPPORTED>>>"
STR_NOT_PERMISSIONED = "<<<NOT_PERM>>>"

BLANK = "blank"
NOT_FOUND = "not_found"
NOT_SUPPORTED = "not_supported"
NOT_PERMISSIONED = "not_permissioned"
_BLANK_KINDS = (BLANK, NOT_FOUND, NOT_SUPPORTED, NOT_PERMISSIONED)
_STR_BLANKS = {STR_BLANK: BLANK, STR_NOT_FOUND: NOT_FOUND, STR_NOT_SUPPORTED: NOT_SUPPORTED,
               STR_NOT_PERMISSIONED: NOT_PERMISSIONED}

MAX_NUM_DEVICES = 32
MAX_STR_LENGTH = 256
MAX_BLOB_LENGTH = 4096
MAX_HIERARCHY_INFO = MAX_NUM_DEVICES * 14  # DCGM_MAX_TOTAL_INSTANCES_PER_GPU = 14
PROF_MAX_NUM_GROUPS = 10
PROF_MAX_FIELD_IDS_PER_GROUP = 64
MAX_FIELDS_PER_GROUP = 128  # DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP

Handle = NewType("Handle", int)
"""A connection (``dcgmHandle_t``)."""


def make_version(size: int, version: int) -> int:
    """DCGM's version word of a struct: its size in the low 24 bits, the version above."""
    return size | (version << 24)


class _ConnectParams(ctypes.Structure):
    """``dcgmConnectV2Params_v2``."""

    _fields_ = (
        ("version", ctypes.c_uint),
        ("persistAfterDisconnect", ctypes.c_uint),
        ("timeoutMs", ctypes.c_uint),
        ("addressIsUnixSocket", ctypes.c_uint),
    )


class _EntityPair(ctypes.Structure):
    """``dcgmGroupEntityPair_t`` (the enum is an int)."""

    _fields_ = (("entityGroupId", ctypes.c_uint), ("entityId", ctypes.c_uint))


class _Value(ctypes.Union):
    _fields_ = (
        ("i64", ctypes.c_int64),
        ("dbl", ctypes.c_double),
        ("str", ctypes.c_char * MAX_STR_LENGTH),
        ("blob", ctypes.c_char * MAX_BLOB_LENGTH),
    )


class _FieldValueV2(ctypes.Structure):
    """``dcgmFieldValue_v2``."""

    _fields_ = (
        ("version", ctypes.c_uint),
        ("entityGroupId", ctypes.c_uint),
        ("entityId", ctypes.c_uint),
        ("fieldId", ctypes.c_ushort),
        ("fieldType", ctypes.c_ushort),
        ("status", ctypes.c_int),
        ("unused", ctypes.c_uint),
        ("ts", ctypes.c_int64),
        ("value", _Value),
    )


class _MigEntityInfo(ctypes.Structure):
    """``dcgmMigEntityInfo_t``."""

    _fields_ = (
        ("gpuUuid", ctypes.c_char * 128),
        ("nvmlGpuIndex", ctypes.c_uint),
        ("nvmlInstanceId", ctypes.c_uint),
        ("nvmlComputeInstanceId", ctypes.c_uint),
        ("nvmlMigProfileId", ctypes.c_uint),
        ("nvmlProfileSlices", ctypes.c_uint),
    )


class _MigHierarchyInfoV2(ctypes.Structure):
    """``dcgmMigHierarchyInfo_v2``."""

    _fields_ = (("entity", _EntityPair), ("parent", _EntityPair), ("info", _MigEntityInfo))


class _MigHierarchyV2(ctypes.Structure):
    """``dcgmMigHierarchy_v2``."""

    _fields_ = (
        ("version", ctypes.c_uint),
        ("count", ctypes.c_uint),
        ("entityList", _MigHierarchyInfoV2 * MAX_HIERARCHY_INFO),
    )


class _ProfMetricGroupInfoV2(ctypes.Structure):
    """``dcgmProfMetricGroupInfo_v2``."""

    _fields_ = (
        ("majorId", ctypes.c_ushort),
        ("minorId", ctypes.c_ushort),
        ("numFieldIds", ctypes.c_uint),
        ("fieldIds", ctypes.c_ushort * PROF_MAX_FIELD_IDS_PER_GROUP),
    )


class _ProfGetMetricGroupsV3(ctypes.Structure):
    """``dcgmProfGetMetricGroups_v3``."""

    _fields_ = (
        ("version", ctypes.c_uint),
        ("unused", ctypes.c_uint),
        ("gpuId", ctypes.c_uint),
        ("numMetricGroups", ctypes.c_uint),
        ("metricGroups", _ProfMetricGroupInfoV2 * PROF_MAX_NUM_GROUPS),
    )


CONNECT_PARAMS_VERSION = 0x02000010
"""``dcgmConnectV2Params_version2``."""
FIELD_VALUE_VERSION = 0x02001020
"""``dcgmFieldValue_version2`` (4128 bytes)."""
MIG_HIERARCHY_VERSION = 0x02011F08
"""``dcgmMigHierarchy_version2`` (448 entries of 164 bytes, plus version and count)."""
PROF_METRIC_GROUPS_VERSION = 0x03000560
"""``dcgmProfGetMetricGroups_version3`` (10 groups of 136 bytes, plus 16 bytes)."""

_LAYOUT = (
    (_ConnectParams, 2, CONNECT_PARAMS_VERSION),
    (_FieldValueV2, 2, FIELD_VALUE_VERSION),
    (_MigHierarchyV2, 2, MIG_HIERARCHY_VERSION),
    (_ProfGetMetricGroupsV3, 3, PROF_METRIC_GROUPS_VERSION),
)


def check_layout() -> None:
    """Raise :class:`ImportError` unless every struct has the size its DCGM version word says."""
    for struct, version, expected in _LAYOUT:
        actual = make_version(ctypes.sizeof(struct), version)
        if actual != expected:
            raise ImportError(
                f"gpu_exporter.dcgm: {struct.__doc__} is {ctypes.sizeof(struct)} bytes here, "
                f"DCGM expects version word {expected:#x} (got {actual:#x})")


check_layout()


# ---------------------------------------------------------------------------- values


def decode(  # noqa: PLR0911 - one return per field type and blank case reads best
    field_type: int, i64: int, dbl: float, text: str,
) -> tuple[float | str | None, str | None]:
    """One field value as ``(value, blank kind)`` (pure).

    A value at or above DCGM's blank base is no value: the kind is ``blank`` (no sample, e.g.
    profiling paused), ``not_found``, ``not_supported`` or ``not_permissioned`` (base + 1, 2,
    3). Doubles and 64-bit integers (and timestamps) are returned as floats, strings as is.
    An unknown field type decodes as ``(None, "blank")``.
    """
    if field_type == FT_DOUBLE:
        if math.isnan(dbl):
            return None, BLANK
        if dbl >= FP64_BLANK:
            return None, _blank_kind(int(dbl - FP64_BLANK))
        return float(dbl), None
    if field_type in {FT_INT64, FT_TIMESTAMP}:
        if i64 >= INT64_BLANK:
            return None, _blank_kind(i64 - INT64_BLANK)
        return float(i64), None
    if field_type == FT_STRING:
        kind = _STR_BLANKS.get(text)
        return (None, kind) if kind is not None else (text, None)
    return None, BLANK


def _blank_kind(offset: int) -> str:
    return _BLANK_KINDS[offset] if 0 <= offset < len(_BLANK_KINDS) else BLANK


@dataclass(frozen=True, slots=True)
class FieldValue:
    """One decoded ``dcgmFieldValue_v2``.

    Attributes:
        entity_group: ``FE_GPU``, ``FE_GPU_I``, ...
        entity_id: DCGM's id of the entity (its own numbering, not NVML's).
        field_id: DCGM field id.
        status: DCGM return code of this value (``ST_OK`` or why there is none).
        value: the number (float) or text; ``None`` when blank or failed.
        blank: the blank kind (see :func:`decode`), ``None`` for a real value.
        timestamp_us: when DCGM sampled it (µs since the epoch).
    """

    entity_group: int
    entity_id: int
    field_id: int
    status: int
    value: float | str | None
    blank: str | None
    timestamp_us: int


@dataclass(frozen=True, slots=True)
class MetricGroup:
    """One profiling metric group of a GPU (groups of one ``major`` exclude each other)."""

    major: int
    minor: int
    field_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MigEntity:
    """One entry of DCGM's MIG hierarchy: a DCGM entity and the NVML ids it stands for.

    Attributes:
        entity_group: ``FE_GPU_I`` or ``FE_GPU_CI``.
        entity_id: DCGM's id of the instance.
        parent_group: entity group of its parent.
        parent_id: DCGM id of its parent.
        gpu_uuid: UUID of the physical GPU.
        gpu_index: NVML index of the physical GPU.
        instance_id: NVML GPU instance id.
        compute_instance_id: NVML compute instance id (for ``FE_GPU_CI``).
    """

    entity_group: int
    entity_id: int
    parent_group: int
    parent_id: int
    gpu_uuid: str
    gpu_index: int
    instance_id: int
    compute_instance_id: int


# ---------------------------------------------------------------------------- errors


class DcgmError(Exception):
    """A DCGM call returned something else than ``DCGM_ST_OK``.

    Attributes:
        function: the DCGM function name.
        code: its return code.
        text: DCGM's own description (``errorString``).
    """

    def __init__(self, function: str, code: int, text: str = "") -> None:
        super().__init__(f"{function} failed: {text or 'error'} ({code})")
        self.function = function
        self.code = code
        self.text = text


class DcgmLibraryNotFound(Exception):  # noqa: N818 - mirrors nvml.NvmlLibraryNotFound
    """No DCGM client library could be loaded; ``str()`` says which names were tried."""


# ---------------------------------------------------------------------------- library

_c_uint_p = ctypes.POINTER(ctypes.c_uint)
_HANDLE = ctypes.c_size_t  # uintptr_t: handles and group ids alike

_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "dcgmInit": (),
    "dcgmShutdown": (),
    "dcgmConnect_v2": (ctypes.c_char_p, ctypes.POINTER(_ConnectParams),
                       ctypes.POINTER(_HANDLE)),
    "dcgmDisconnect": (_HANDLE,),
    "dcgmGetAllSupportedDevices": (_HANDLE, _c_uint_p, ctypes.POINTER(ctypes.c_int)),
    "dcgmGroupCreate": (_HANDLE, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_HANDLE)),
    "dcgmGroupAddEntity": (_HANDLE, _HANDLE, ctypes.c_int, ctypes.c_uint),
    "dcgmGroupDestroy": (_HANDLE, _HANDLE),
    "dcgmFieldGroupCreate": (_HANDLE, ctypes.c_int, ctypes.POINTER(ctypes.c_ushort),
                             ctypes.c_char_p, ctypes.POINTER(_HANDLE)),
    "dcgmFieldGroupDestroy": (_HANDLE, _HANDLE),
    "dcgmWatchFields": (_HANDLE, _HANDLE, _HANDLE, ctypes.c_longlong, ctypes.c_double,
                        ctypes.c_int),
    "dcgmUnwatchFields": (_HANDLE, _HANDLE, _HANDLE),
    "dcgmUpdateAllFields": (_HANDLE, ctypes.c_int),
    "dcgmEntitiesGetLatestValues": (_HANDLE, ctypes.POINTER(_EntityPair), ctypes.c_uint,
                                    ctypes.POINTER(ctypes.c_ushort), ctypes.c_uint,
                                    ctypes.c_uint, ctypes.POINTER(_FieldValueV2)),
    "dcgmGetGpuInstanceHierarchy": (_HANDLE, ctypes.POINTER(_MigHierarchyV2)),
    "dcgmProfGetSupportedMetricGroups": (_HANDLE, ctypes.POINTER(_ProfGetMetricGroupsV3)),
}


def load_library(path: str | None = None) -> ctypes.CDLL:
    """Open the DCGM client library: ``path``, else ``libdcgm.so.4``, else ``libdcgm.so.3``.

    Raises:
        DcgmLibraryNotFound: none could be opened.
    """
    names = (path,) if path else LIBRARY_NAMES
    errors: list[str] = []
    for name in names:
        library = _open(name, errors)
        if library is not None:
            return library
    raise DcgmLibraryNotFound(
        f"no DCGM client library found ({' or '.join(names)}: {'; '.join(errors)})")


def _open(name: str, errors: list[str]) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except OSError as exc:
        errors.append(str(exc))
        return None


class Dcgm:
    """The DCGM client library, initialised (``dcgmInit``); every call returns our types.

    Not thread-safe by itself: the exporter makes every call from one thread.

    Raises:
        DcgmLibraryNotFound: the library (or one of the functions used) is missing.
        DcgmError: ``dcgmInit`` failed.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library
        self._fns: dict[str, Any] = {}
        try:
            error_string = library.errorString
        except AttributeError:
            raise DcgmLibraryNotFound("the DCGM library has no errorString symbol") from None
        error_string.argtypes = (ctypes.c_int,)
        error_string.restype = ctypes.c_char_p
        self._error_string = error_string
        for name, argtypes in _SIGNATURES.items():
            try:
                fn = getattr(library, name)
            except AttributeError:
                raise DcgmLibraryNotFound(
                    f"the DCGM library has no {name} (too old a DCGM?)") from None
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
            self._fns[name] = fn
        self._call("dcgmInit")

    def error_string(self, code: int) -> str:
        """DCGM's text for a return code."""
        raw = self._error_string(code)
        return raw.decode("utf-8", "replace") if raw else f"DCGM error {code}"

    def _call(self, name: str, *args: object) -> None:
        code = int(self._fns[name](*args))
        if code != ST_OK:
            raise DcgmError(name, code, self.error_string(code))

    def shutdown(self) -> None:
        """``dcgmShutdown``: closes every connection of this process."""
        self._call("dcgmShutdown")

    def connect(self, address: str, *, unix_socket: bool, timeout_ms: int) -> Handle:
        """Connect to a running host engine (never starts one); connection-scoped watches."""
        params = _ConnectParams(CONNECT_PARAMS_VERSION, 0, max(int(timeout_ms), 1),
                                1 if unix_socket else 0)
        handle = _HANDLE()
        self._call("dcgmConnect_v2", address.encode(), ctypes.byref(params),
                   ctypes.byref(handle))
        return Handle(handle.value)

    def disconnect(self, handle: Handle) -> None:
        """``dcgmDisconnect``."""
        self._call("dcgmDisconnect", handle)

    def supported_devices(self, handle: Handle) -> tuple[int, ...]:
        """DCGM ids of the GPUs the engine supports."""
        ids = (ctypes.c_uint * MAX_NUM_DEVICES)()
        count = ctypes.c_int(0)
        self._call("dcgmGetAllSupportedDevices", handle, ids, ctypes.byref(count))
        return tuple(int(ids[i]) for i in range(min(max(count.value, 0), MAX_NUM_DEVICES)))

    def group_create(self, handle: Handle, name: str) -> int:
        """An empty entity group."""
        group = _HANDLE()
        self._call("dcgmGroupCreate", handle, GROUP_EMPTY, name.encode(), ctypes.byref(group))
        return int(group.value)

    def group_add_entity(self, handle: Handle, group: int, entity_group: int,
                         entity_id: int) -> None:
        """Add one entity to a group."""
        self._call("dcgmGroupAddEntity", handle, group, entity_group, entity_id)

    def group_destroy(self, handle: Handle, group: int) -> None:
        """``dcgmGroupDestroy``."""
        self._call("dcgmGroupDestroy", handle, group)

    def field_group_create(self, handle: Handle, field_ids: Sequence[int], name: str) -> int:
        """A field group of at most 128 fields."""
        if not 0 < len(field_ids) <= MAX_FIELDS_PER_GROUP:
            raise ValueError(f"a DCGM field group holds 1-{MAX_FIELDS_PER_GROUP} fields")
        ids = (ctypes.c_ushort * len(field_ids))(*field_ids)
        group = _HANDLE()
        self._call("dcgmFieldGroupCreate", handle, len(field_ids), ids, name.encode(),
                   ctypes.byref(group))
        return int(group.value)

    def field_group_destroy(self, handle: Handle, field_group: int) -> None:
        """``dcgmFieldGroupDestroy``."""
        self._call("dcgmFieldGroupDestroy", handle, field_group)

    def watch(  # noqa: PLR0917 - the C call's arguments
        self, handle: Handle, group: int, field_group: int, update_us: int,
        max_keep_age_s: float, max_keep_samples: int,
    ) -> None:
        """``dcgmWatchFields``."""
        self._call("dcgmWatchFields", handle, group, field_group, update_us, max_keep_age_s,
                   max_keep_samples)

    def unwatch(self, handle: Handle, group: int, field_group: int) -> None:
        """``dcgmUnwatchFields``."""
        self._call("dcgmUnwatchFields", handle, group, field_group)

    def update_all(self, handle: Handle, *, wait: bool) -> None:
        """``dcgmUpdateAllFields``: one update of every watched field now."""
        self._call("dcgmUpdateAllFields", handle, 1 if wait else 0)

    def latest_values(
        self, handle: Handle, entities: Sequence[tuple[int, int]], field_ids: Sequence[int],
    ) -> list[FieldValue]:
        """The latest value of every field on every entity (one ``FieldValue`` each)."""
        count = len(entities) * len(field_ids)
        if count == 0:
            return []
        pairs = (_EntityPair * len(entities))(*(_EntityPair(g, i) for g, i in entities))
        ids = (ctypes.c_ushort * len(field_ids))(*field_ids)
        out = (_FieldValueV2 * count)()
        for entry in out:
            entry.version = FIELD_VALUE_VERSION
        self._call("dcgmEntitiesGetLatestValues", handle, pairs, len(entities), ids,
                   len(field_ids), 0, out)
        values = []
        for entry in out:
            raw = entry.value
            text = raw.str.decode("utf-8", "replace") if entry.fieldType == FT_STRING else ""
            value, blank = decode(entry.fieldType, raw.i64, raw.dbl, text)
            values.append(FieldValue(int(entry.entityGroupId), int(entry.entityId),
                                     int(entry.fieldId), int(entry.status), value, blank,
                                     int(entry.ts)))
        return values

    def mig_hierarchy(self, handle: Handle) -> tuple[MigEntity, ...]:
        """DCGM's MIG instances with their NVML ids (``dcgmGetGpuInstanceHierarchy``)."""
        hierarchy = _MigHierarchyV2()
        hierarchy.version = MIG_HIERARCHY_VERSION
        self._call("dcgmGetGpuInstanceHierarchy", handle, ctypes.byref(hierarchy))
        out = []
        for i in range(min(hierarchy.count, MAX_HIERARCHY_INFO)):
            entry = hierarchy.entityList[i]
            info = entry.info
            out.append(MigEntity(
                int(entry.entity.entityGroupId), int(entry.entity.entityId),
                int(entry.parent.entityGroupId), int(entry.parent.entityId),
                info.gpuUuid.decode("utf-8", "replace"), int(info.nvmlGpuIndex),
                int(info.nvmlInstanceId), int(info.nvmlComputeInstanceId)))
        return tuple(out)

    def metric_groups(self, handle: Handle, gpu_id: int) -> tuple[MetricGroup, ...]:
        """The profiling metric groups of one GPU (``dcgmProfGetSupportedMetricGroups``)."""
        request = _ProfGetMetricGroupsV3()
        request.version = PROF_METRIC_GROUPS_VERSION
        request.gpuId = gpu_id
        self._call("dcgmProfGetSupportedMetricGroups", handle, ctypes.byref(request))
        groups = []
        for i in range(min(request.numMetricGroups, PROF_MAX_NUM_GROUPS)):
            group = request.metricGroups[i]
            n = min(group.numFieldIds, PROF_MAX_FIELD_IDS_PER_GROUP)
            groups.append(MetricGroup(int(group.majorId), int(group.minorId),
                                      tuple(int(group.fieldIds[j]) for j in range(n))))
        return tuple(groups)
