"""ctypes declarations of DCGM's client API for the C-ABI tests of the stub libdcgm.so.4.

Written for these tests from DCGM's public headers (NVIDIA/DCGM 72fa3fe, 4.6.0), separately
from the stub's C declarations (src/gpu_exporter/simulator/dcgm/stub.h), so that each checks
the other: every struct's size is asserted against the version word DCGM documents for it.
Also: a canary-fenced buffer to catch writes past an output array.
"""

from __future__ import annotations

import ctypes
from typing import Any

# dcgmReturn_t (dcgm_structs.h:344-416)
OK = 0
BADPARAM = -1
NOT_CONFIGURED = -5
NOT_SUPPORTED = -6
UNINITIALIZED = -10
VER_MISMATCH = -12
NO_DATA = -14
NOT_WATCHED = -16
CONNECTION_NOT_VALID = -21
MAX_LIMIT = -24
DUPLICATE_KEY = -26
MODULE_NOT_LOADED = -33
PROFILING_NOT_SUPPORTED = -36
PROFILING_LIBRARY_ERROR = -37
PROFILING_MULTI_PASS = -38
INSTANCE_NOT_FOUND = -45

FE_GPU, FE_GPU_I, FE_GPU_CI = 1, 4, 5          # dcgm_fields.h:261-274
GROUP_EMPTY = 1                                 # dcgm_structs.h:441
FT_DOUBLE, FT_INT64, FT_STRING = ord("d"), ord("i"), ord("s")  # dcgm_fields.h:36-56
INT64_BLANK = 0x7FFFFFFFFFFFFFF0                # dcgm_structs.h:59
FP64_BLANK = 140737488355328.0                  # dcgm_structs.h:65
STR_BLANKS = ("<<<NULL>>>", "<<<NOT_FOUND>>>", "<<<NOT_SUPPORTED>>>", "<<<NOT_PERM>>>")
MAX_NUM_DEVICES = 32
MAX_HIERARCHY_INFO = 32 * 14
UUID, GR_ACTIVE, SM_ACTIVE, SM_OCC, TENSOR, DRAM, FP64, FP32, FP16 = (
    54, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008)
PCIE_TX, PCIE_RX, NVLINK_TX, NVLINK_RX = 1009, 1010, 1011, 1012


def version(struct: type[ctypes.Structure], ver: int) -> int:
    """MAKE_DCGM_VERSION (dcgm_structs.h:37)."""
    return ctypes.sizeof(struct) | ver << 24


class ConnectParams(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("persistAfterDisconnect", ctypes.c_uint),
                ("timeoutMs", ctypes.c_uint), ("addressIsUnixSocket", ctypes.c_uint)]


class EntityPair(ctypes.Structure):
    _fields_ = [("entityGroupId", ctypes.c_uint), ("entityId", ctypes.c_uint)]


class _Value(ctypes.Union):
    _fields_ = [("i64", ctypes.c_int64), ("dbl", ctypes.c_double),
                ("str", ctypes.c_char * 256), ("blob", ctypes.c_char * 4096)]


class FieldValue(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("entityGroupId", ctypes.c_uint),
                ("entityId", ctypes.c_uint), ("fieldId", ctypes.c_ushort),
                ("fieldType", ctypes.c_ushort), ("status", ctypes.c_int),
                ("unused", ctypes.c_uint), ("ts", ctypes.c_int64), ("value", _Value)]


class MigEntityInfo(ctypes.Structure):
    _fields_ = [("gpuUuid", ctypes.c_char * 128), ("nvmlGpuIndex", ctypes.c_uint),
                ("nvmlInstanceId", ctypes.c_uint), ("nvmlComputeInstanceId", ctypes.c_uint),
                ("nvmlMigProfileId", ctypes.c_uint), ("nvmlProfileSlices", ctypes.c_uint)]


class MigHierarchyInfo(ctypes.Structure):
    _fields_ = [("entity", EntityPair), ("parent", EntityPair), ("info", MigEntityInfo)]


class MigHierarchy(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("count", ctypes.c_uint),
                ("entityList", MigHierarchyInfo * MAX_HIERARCHY_INFO)]


class MetricGroupInfo(ctypes.Structure):
    _fields_ = [("majorId", ctypes.c_ushort), ("minorId", ctypes.c_ushort),
                ("numFieldIds", ctypes.c_uint), ("fieldIds", ctypes.c_ushort * 64)]


class MetricGroups(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("unused", ctypes.c_uint), ("gpuId", ctypes.c_uint),
                ("numMetricGroups", ctypes.c_uint), ("metricGroups", MetricGroupInfo * 10)]


CONNECT_V2 = version(ConnectParams, 2)
FIELD_VALUE_V2 = version(FieldValue, 2)
MIG_HIERARCHY_V2 = version(MigHierarchy, 2)
METRIC_GROUPS_V3 = version(MetricGroups, 3)

GUARD = 64
CANARY = 0xA5


class Guarded:
    """``count`` times ``ctype`` with canary bytes on both sides (``.intact()`` checks them)."""

    def __init__(self, ctype: Any, count: int = 1) -> None:
        self.size = ctypes.sizeof(ctype) * count
        self.raw = (ctypes.c_ubyte * (self.size + 2 * GUARD))()
        ctypes.memset(self.raw, CANARY, self.size + 2 * GUARD)
        ctypes.memset(ctypes.addressof(self.raw) + GUARD, 0, self.size)
        self.obj = (ctype * count).from_address(ctypes.addressof(self.raw) + GUARD)

    def intact(self) -> bool:
        raw = bytes(self.raw)
        fence = bytes([CANARY]) * GUARD
        return raw[:GUARD] == fence and raw[GUARD + self.size:] == fence


def load(path: str) -> ctypes.CDLL:
    """The library at ``path`` with the prototypes of dcgm_agent.h."""
    lib = ctypes.CDLL(path)
    h, u, i, p = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.POINTER
    ptr = ctypes.c_void_p
    protos: dict[str, list[Any]] = {
        "dcgmInit": [],
        "dcgmShutdown": [],
        "dcgmConnect_v2": [ctypes.c_char_p, ptr, ptr],
        "dcgmDisconnect": [h],
        "dcgmGetAllSupportedDevices": [h, ptr, ptr],
        "dcgmGroupCreate": [h, i, ctypes.c_char_p, ptr],
        "dcgmGroupDestroy": [h, h],
        "dcgmGroupAddEntity": [h, h, u, u],
        "dcgmFieldGroupCreate": [h, i, ptr, ctypes.c_char_p, ptr],
        "dcgmFieldGroupDestroy": [h, h],
        "dcgmWatchFields": [h, h, h, ctypes.c_longlong, ctypes.c_double, i],
        "dcgmUnwatchFields": [h, h, h],
        "dcgmUpdateAllFields": [h, i],
        "dcgmEntitiesGetLatestValues": [h, ptr, u, ptr, u, u, ptr],
        "dcgmGetGpuInstanceHierarchy": [h, ptr],
        "dcgmProfGetSupportedMetricGroups": [h, ptr],
    }
    for name, args in protos.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_int
    lib.errorString.argtypes = [ctypes.c_int]
    lib.errorString.restype = ctypes.c_char_p
    del p
    return lib
