"""The one module that talks to NVML (through pynvml).

Everything else in the exporter sees typed Python values and our own errors:

* ``NOT_SUPPORTED`` becomes ``None`` (never an exception, never counted as an error);
* ``GPU_IS_LOST`` becomes :class:`GpuLostError`;
* any other failing return code becomes :class:`NvmlError` naming the NVML function and code;
* a missing library becomes :class:`NvmlLibraryNotFound`, whose message the CLI prints.

Every failure (except ``NOT_SUPPORTED`` and the codes a call declares as "absent") is counted per
(function, return-code name) for ``gpu_exporter_nvml_errors_total``. Versioned symbols are probed
once: ``nvmlDeviceGetTemperatureV`` falls back to ``nvmlDeviceGetTemperature``, ``MemoryInfo_v2`` to
the v1 struct (without ``reserved``), and so on. Newer pynvml wrappers are looked up once at
start too (:func:`_has`): with an older nvidia-ml-py that lacks one, the fallback is used
from the start instead of an ``AttributeError`` on every call.

The simulator hook :func:`activate_simulator` (also reachable as ``Nvml(simulate=...)``) prepares a
simulated GPU profile and preloads its library before pynvml loads anything.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NewType, TypeVar

import pynvml

from gpu_exporter.model import Entity

if TYPE_CHECKING:
    from gpu_exporter.simulator import SimSession

T = TypeVar("T")

Handle = NewType("Handle", object)
"""An opaque NVML device handle (a whole GPU or a MIG device)."""

EventSet = NewType("EventSet", object)
"""An opaque NVML event set."""

GpmSample = NewType("GpmSample", object)
"""An opaque GPM sample buffer (allocated once, reused)."""

SUCCESS = 0
NOT_SUPPORTED = 3
INVALID_ARGUMENT = 2
NOT_FOUND = 6
INSUFFICIENT_SIZE = 7
TIMEOUT = 10
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
CORRUPTED_INFOROM = 14
GPU_IS_LOST = 15
ARGUMENT_VERSION_MISMATCH = 25

NO_SCOPE_ID = 0xFFFFFFFF
"""GI/CI id of an event that is not MIG-scoped; also "all links" as a field-value scope."""

EVENT_XID = 0x8
EVENT_CLOCK = 0x10
EVENT_MIG_CONFIG_CHANGE = 0x100

CODE_NAMES: dict[int, str] = {
    0: "SUCCESS", 1: "UNINITIALIZED", 2: "INVALID_ARGUMENT", 3: "NOT_SUPPORTED",
    4: "NO_PERMISSION", 5: "ALREADY_INITIALIZED", 6: "NOT_FOUND", 7: "INSUFFICIENT_SIZE",
    8: "INSUFFICIENT_POWER", 9: "DRIVER_NOT_LOADED", 10: "TIMEOUT", 11: "IRQ_ISSUE",
    12: "LIBRARY_NOT_FOUND", 13: "FUNCTION_NOT_FOUND", 14: "CORRUPTED_INFOROM",
    15: "GPU_IS_LOST", 16: "RESET_REQUIRED", 17: "OPERATING_SYSTEM",
    18: "LIB_RM_VERSION_MISMATCH", 19: "IN_USE", 20: "MEMORY", 21: "NO_DATA",
    22: "VGPU_ECC_NOT_SUPPORTED", 23: "INSUFFICIENT_RESOURCES", 24: "FREQ_NOT_SUPPORTED",
    25: "ARGUMENT_VERSION_MISMATCH", 26: "DEPRECATED", 27: "NOT_READY", 28: "GPU_NOT_FOUND",
    29: "INVALID_STATE", 30: "RESET_TYPE_NOT_SUPPORTED", 999: "UNKNOWN",
}

BRAND_NAMES: dict[int, str] = {
    0: "Unknown", 1: "Quadro", 2: "Tesla", 3: "NVS", 4: "Grid", 5: "GeForce", 6: "Titan",
    7: "NVIDIA Virtual Applications", 8: "NVIDIA Virtual PC", 9: "NVIDIA Virtual Compute Server",
    10: "NVIDIA RTX Virtual Workstation", 11: "NVIDIA Cloud Gaming", 12: "Quadro RTX",
    13: "NVIDIA RTX", 14: "NVIDIA", 15: "GeForce RTX", 16: "Titan RTX",
}

_NO_LIBRARY_MESSAGE = (
    "no NVML library found (libnvidia-ml.so.1 could not be loaded): install the NVIDIA driver "
    "on this host, or run on simulated GPUs with --simulate PROFILE (e.g. --simulate h100x8)"
)


def code_name(code: int) -> str:
    """The NVML return-code name without the ``NVML_ERROR_`` prefix, e.g. ``GPU_IS_LOST``."""
    return CODE_NAMES.get(code, f"CODE_{code}")


class NvmlError(Exception):
    """An NVML call failed with a return code other than NOT_SUPPORTED.

    Attributes:
        function: the NVML function name, e.g. ``nvmlDeviceGetPowerUsage``.
        code: the NVML return code.
    """

    def __init__(self, function: str, code: int) -> None:
        super().__init__(f"{function} failed: {code_name(code)} ({code})")
        self.function = function
        self.code = code


class GpuLostError(NvmlError):
    """The GPU fell off the bus or is otherwise unreachable (``NVML_ERROR_GPU_IS_LOST``)."""


class NvmlLibraryNotFound(Exception):  # noqa: N818 - the name is part of the agreed interface
    """No NVML library on this host; ``str()`` is the message the CLI prints."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(_NO_LIBRARY_MESSAGE + (f" [{detail}]" if detail else ""))


@dataclass(frozen=True, slots=True)
class MemoryInfo:
    """Framebuffer memory in bytes; ``reserved`` is ``None`` with the v1 struct."""

    total: int
    free: int
    used: int
    reserved: int | None


class FieldReading(NamedTuple):
    """One decoded entry of ``nvmlDeviceGetFieldValues``.

    Attributes:
        field_id: NVML field id (``NVML_FI_DEV_*``).
        scope_id: scope (NVLink link) the value was requested for.
        value: the decoded number, ``None`` unless ``code`` is SUCCESS.
        code: this entry's own NVML return code.
        timestamp_us: driver timestamp of the value in microseconds.
    """

    field_id: int
    scope_id: int
    value: float | None
    code: int
    timestamp_us: int


@dataclass(frozen=True, slots=True)
class NvmlEvent:
    """One event delivered by ``nvmlEventSetWait_v2``.

    Attributes:
        gpu: NVML index of the GPU it came from (``None`` if the handle is unknown).
        event_type: the event type bit (``EVENT_XID`` ...).
        data: event data (the XID code for XID events).
        gi_id: GPU instance id for MIG-scoped events, else ``None``.
        ci_id: compute instance id for MIG-scoped events, else ``None``.
    """

    gpu: int | None
    event_type: int
    data: int
    gi_id: int | None
    ci_id: int | None


ProcessKind = Literal["compute", "graphics", "mps"]
"""Which running-process list: compute, graphics, or MPS clients."""


@dataclass(frozen=True, slots=True)
class MigDevice:
    """A MIG instance: its entity and its MIG device handle."""

    entity: Entity
    handle: Handle


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """Static identity of one physical GPU, read once when it is probed.

    Attributes:
        entity: the whole-GPU entity.
        handle: its device handle.
        mig_enabled: MIG mode currently on.
        instances: MIG instances (empty when MIG is off), in MIG device index order.
        gpm_supported: the GPU supports GPM (Hopper and newer).
        strings: static string properties by DCGM field id (driver version, serial, ...).
        mig_capable: the GPU supports MIG (its layout is re-checked now and then).
    """

    entity: Entity
    handle: Handle
    mig_enabled: bool
    instances: tuple[MigDevice, ...]
    gpm_supported: bool
    strings: dict[int, str]
    mig_capable: bool = False


def _has(name: str) -> bool:
    """True when this nvidia-ml-py has the wrapper ``name`` (older releases lack newer ones)."""
    return callable(getattr(pynvml, name, None))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_CI_PREFIX = re.compile(r"^\d+c\.")


def gi_profile(mig_name: str) -> str:
    """``GPU_I_PROFILE`` from a MIG device name: its last word without a compute-instance part.

    ``NVIDIA A100-SXM4-80GB MIG 3g.40gb`` -> ``3g.40gb``; a compute instance of a split GPU
    instance (``... MIG 1c.3g.40gb``) -> ``3g.40gb`` too, the GPU instance's profile.
    """
    last = mig_name.rsplit(" ", 1)[-1] if mig_name else ""
    return _CI_PREFIX.sub("", last)


def _address(handle: object) -> int:
    """Numeric address behind a ctypes device handle (0 when NULL)."""
    return ctypes.cast(handle, ctypes.c_void_p).value or 0  # type: ignore[arg-type]


def activate_simulator(
    profile: str | os.PathLike[str], *, seed: int = 0, state_dir: Path | None = None,
) -> SimSession:
    """Prepare a simulated GPU profile and preload its NVML library (for ``--simulate``).

    Must run before the first NVML call of the process. Raises the simulator's own
    ``SimulatorError`` (a ``ValueError``) for an unknown or malformed profile.
    """
    from gpu_exporter import simulator  # noqa: PLC0415 - never loaded unless asked for

    session = simulator.prepare(profile, seed=seed, state_dir=state_dir)
    simulator.activate(session)
    return session


class Nvml:
    """An initialised NVML library with typed calls and error accounting.

    Args:
        simulate: a simulator profile name or YAML path; ``None`` uses the host's driver.
        seed: simulator seed.
        state_dir: simulator state directory (a new temporary one when ``None``).

    Raises:
        NvmlLibraryNotFound: no ``libnvidia-ml.so.1`` on this host.
        NvmlError: ``nvmlInit`` failed (driver not loaded, ...).
    """

    def __init__(
        self,
        *,
        simulate: str | os.PathLike[str] | None = None,
        seed: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.sim_session: SimSession | None = None
        if simulate is not None:
            self.sim_session = activate_simulator(simulate, seed=seed, state_dir=state_dir)
        self._errors: dict[tuple[str, str], int] = {}
        self._errors_lock = threading.Lock()
        self._closed = False
        self._use_temperature_v = _has("nvmlDeviceGetTemperatureV")
        self._use_memory_v2 = hasattr(pynvml, "nvmlMemory_v2")
        self._use_events_reasons = _has("nvmlDeviceGetCurrentClocksEventReasons")
        self._use_processes_v3 = _has("nvmlDeviceGetComputeRunningProcesses_v3")
        self._batches: dict[tuple[int, tuple[tuple[int, int], ...]], _FieldBatch] = {}
        self._process_buffers: dict[tuple[int, str], _Buffer] = {}
        self._sample_buffers: dict[int, _Buffer] = {}
        self._fns: dict[str, Callable[..., int]] = {}  # per-cycle C entry points (_fn)
        self.switches = 0
        """How often a versioned entry point was turned down (see :meth:`drop_versioned`)."""
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            code = int(exc.value)
            if code == LIBRARY_NOT_FOUND:
                raise NvmlLibraryNotFound() from None
            self._count("nvmlInit", code)
            raise NvmlError("nvmlInit", code) from None
        except OSError as exc:  # a broken library file rather than a missing one
            raise NvmlLibraryNotFound(str(exc)) from None

    # ----------------------------------------------------------------- bookkeeping

    def _count(self, function: str, code: int) -> None:
        key = (function, code_name(code))
        with self._errors_lock:
            self._errors[key] = self._errors.get(key, 0) + 1

    def error_counts(self) -> dict[tuple[str, str], int]:
        """Failed calls so far by (function, return-code name); never decreases."""
        with self._errors_lock:
            return dict(self._errors)

    def _call(
        self, function: str, fn: Callable[..., T], *args: object, absent: Sequence[int] = (),
    ) -> T | None:
        """Run one pynvml call: NOT_SUPPORTED and ``absent`` codes give None, others raise."""
        try:
            return fn(*args)
        except pynvml.NVMLError as exc:
            code = int(exc.value)
            if code == NOT_SUPPORTED or code in absent:
                return None
            self._count(function, code)
            if code == GPU_IS_LOST:
                raise GpuLostError(function, code) from None
            raise NvmlError(function, code) from None

    def _fn(self, function: str) -> Callable[..., int]:
        """A C entry point, looked up once through pynvml's own lookup, then called directly.

        The per-cycle reads call the library without pynvml's wrappers (a Python frame, a
        lookup and fresh ctypes objects per call; printable structures with Python attribute
        hooks): the same C calls and return codes, mapped to the same errors as :meth:`_call`.
        A symbol the library lacks raises ``FUNCTION_NOT_FOUND`` (counted), as the wrapper did.
        """
        fn: Callable[..., int] | None = self._fns.get(function)
        if fn is None:
            try:
                fn = self._fns[function] = pynvml._nvmlGetFunctionPointer(function)
            except pynvml.NVMLError as exc:
                raise self._failed(function, int(exc.value)) from None
        return fn

    def entry_address(self, function: str) -> int:
        """The C address of a library entry point, for compiled code that calls it directly.

        Looked up once, as :meth:`_fn` does (the same errors: a symbol the library lacks
        raises ``FUNCTION_NOT_FOUND``, counted). The compiled caller gets the answer codes
        and maps them through this module (:meth:`failure`), so NVML's rules stay here.
        """
        address: int | None = ctypes.cast(self._fn(function), ctypes.c_void_p).value  # type: ignore[arg-type]
        if not address:  # a NULL symbol: nothing a caller could call
            raise self._failed(function, FUNCTION_NOT_FOUND)
        return address

    def failure(self, function: str, code: int) -> NvmlError:
        """The error of ``function`` answering ``code`` (counted), to raise; GPU lost included."""
        return self._failed(function, code)

    def has_entry(self, function: str) -> bool:
        """Whether the library has the entry point ``function`` (nothing counted).

        A compiled read leaves a call the library lacks to the direct read, which counts its
        ``FUNCTION_NOT_FOUND`` as it always did.
        """
        if function in self._fns:
            return True
        try:
            self._fns[function] = pynvml._nvmlGetFunctionPointer(function)
        except pynvml.NVMLError:
            return False
        return True

    def direct_function(self, reading: str) -> str:
        """The entry point the direct read ``reading`` calls now.

        ``reading``: ``temperature``, ``memory_info`` or ``clocks_event_reasons``, the reads
        with a versioned entry point: that one until the library turned it down (see
        :meth:`drop_versioned`), then the older one.
        """
        newer, older = _VERSIONED[reading]
        return newer if getattr(self, _VERSIONED_FLAG[reading]) else older

    def drop_versioned(self, function: str, code: int) -> NvmlError | None:
        """A compiled read's versioned call ``function`` answered ``code``; counted.

        Returns:
            ``None`` when the direct read falls back on that answer: from now on it (and
            :meth:`direct_function`) uses the older entry point, and :attr:`switches` goes
            up; otherwise the error to raise.
        """
        error = self._failed(function, code)
        for reading, (newer, _) in _VERSIONED.items():
            if newer == function and code in _FALLBACK_CODES[reading]:
                setattr(self, _VERSIONED_FLAG[reading], False)
                self.switches += 1
                return None
        return error

    def _uint(self, function: str, handle: Handle, *args: int) -> int | None:
        """A direct call whose last argument is one ``unsigned int`` out-parameter.

        Returns:
            The value; ``None`` on NOT_SUPPORTED. Other codes raise (counted), as :meth:`_call`.
        """
        out = _c_uint()
        code = (self._fns.get(function) or self._fn(function))(handle, *args, _byref(out))
        if code == SUCCESS:
            return int(out.value)
        if code == NOT_SUPPORTED:
            return None
        raise self._failed(function, code)

    def _struct(self, function: str, handle: Handle, out: ctypes.Structure) -> bool:
        """A direct call filling the structure ``out``: False on NOT_SUPPORTED; others raise."""
        code = (self._fns.get(function) or self._fn(function))(handle, _byref(out))
        if code == SUCCESS:
            return True
        if code == NOT_SUPPORTED:
            return False
        raise self._failed(function, code)

    def _call_ok(self, function: str, fn: Callable[..., object], *args: object) -> bool:
        """Run a pynvml call that returns nothing: True on success, False on NOT_SUPPORTED."""

        def run() -> bool:
            fn(*args)
            return True

        return self._call(function, run) is not None

    def close(self) -> None:
        """Shut NVML down (idempotent); the library itself stays loaded."""
        if self._closed:
            return
        self._closed = True
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:
            self._count("nvmlShutdown", int(exc.value))

    # ----------------------------------------------------------------- system

    def driver_version(self) -> str | None:
        """``nvmlSystemGetDriverVersion``, e.g. ``570.124.06``."""
        value = self._call("nvmlSystemGetDriverVersion", pynvml.nvmlSystemGetDriverVersion)
        return None if value is None else _text(value)

    def nvml_version(self) -> str | None:
        """``nvmlSystemGetNVMLVersion``, e.g. ``12.570.124.06``."""
        value = self._call("nvmlSystemGetNVMLVersion", pynvml.nvmlSystemGetNVMLVersion)
        return None if value is None else _text(value)

    def cuda_driver_version(self) -> int | None:
        """``nvmlSystemGetCudaDriverVersion``: major * 1000 + minor * 10."""
        return self._call(
            "nvmlSystemGetCudaDriverVersion", pynvml.nvmlSystemGetCudaDriverVersion)

    def device_count(self) -> int:
        """Number of GPUs NVML sees."""
        return self._call("nvmlDeviceGetCount", pynvml.nvmlDeviceGetCount) or 0

    def handle(self, index: int) -> Handle:
        """Device handle of GPU ``index``."""
        value = self._call(
            "nvmlDeviceGetHandleByIndex", pynvml.nvmlDeviceGetHandleByIndex, index)
        if value is None:
            raise NvmlError("nvmlDeviceGetHandleByIndex", NOT_SUPPORTED)
        return Handle(value)

    # ----------------------------------------------------------------- identity

    def name(self, handle: Handle) -> str | None:
        """Product name (``NVIDIA H100 80GB HBM3``; MIG: ``<parent> MIG 1g.10gb``)."""
        value = self._call("nvmlDeviceGetName", pynvml.nvmlDeviceGetName, handle)
        return None if value is None else _text(value)

    def uuid(self, handle: Handle) -> str | None:
        """``GPU-...`` or ``MIG-...`` UUID."""
        value = self._call("nvmlDeviceGetUUID", pynvml.nvmlDeviceGetUUID, handle)
        return None if value is None else _text(value)

    def pci_bus_id(self, handle: Handle) -> str | None:
        """PCI bus id in ``00000000:18:00.0`` form."""
        info = self._call("nvmlDeviceGetPciInfo_v3", pynvml.nvmlDeviceGetPciInfo_v3, handle)
        return None if info is None else _text(info.busId)

    def serial(self, handle: Handle) -> str | None:
        """Board serial number."""
        value = self._call("nvmlDeviceGetSerial", pynvml.nvmlDeviceGetSerial, handle)
        return None if value is None else _text(value)

    def brand(self, handle: Handle) -> str | None:
        """Brand name (``Tesla``, ``GeForce``, ``NVIDIA`` ...)."""
        value = self._call("nvmlDeviceGetBrand", pynvml.nvmlDeviceGetBrand, handle)
        return None if value is None else BRAND_NAMES.get(int(value), f"Brand {value}")

    def vbios_version(self, handle: Handle) -> str | None:
        """VBIOS version string."""
        value = self._call(
            "nvmlDeviceGetVbiosVersion", pynvml.nvmlDeviceGetVbiosVersion, handle)
        return None if value is None else _text(value)

    def inforom_version(self, handle: Handle, obj: int) -> str | None:
        """InfoROM object version (0 OEM, 1 ECC, 2 power)."""
        value = self._call(
            "nvmlDeviceGetInforomVersion", pynvml.nvmlDeviceGetInforomVersion, handle, obj)
        return None if value is None else _text(value)

    def inforom_image_version(self, handle: Handle) -> str | None:
        """InfoROM image version."""
        value = self._call(
            "nvmlDeviceGetInforomImageVersion", pynvml.nvmlDeviceGetInforomImageVersion, handle)
        return None if value is None else _text(value)

    def minor_number(self, handle: Handle) -> int | None:
        """``/dev/nvidiaN`` minor number."""
        return self._call("nvmlDeviceGetMinorNumber", pynvml.nvmlDeviceGetMinorNumber, handle)

    # ----------------------------------------------------------------- MIG

    def mig_enabled(self, handle: Handle) -> bool:
        """Current MIG mode; False on GPUs without MIG."""
        mode = self._call("nvmlDeviceGetMigMode", pynvml.nvmlDeviceGetMigMode, handle)
        return bool(mode is not None and mode[0])

    def max_mig_devices(self, handle: Handle) -> int:
        """Maximum number of MIG devices (0 without MIG)."""
        count = self._call(
            "nvmlDeviceGetMaxMigDeviceCount", pynvml.nvmlDeviceGetMaxMigDeviceCount, handle)
        return int(count or 0)

    def mig_handle(self, handle: Handle, index: int) -> Handle | None:
        """MIG device ``index`` of a GPU, or ``None`` for a gap in the numbering."""
        value = self._call(
            "nvmlDeviceGetMigDeviceHandleByIndex", pynvml.nvmlDeviceGetMigDeviceHandleByIndex,
            handle, index, absent=(NOT_FOUND, INVALID_ARGUMENT))
        return None if value is None else Handle(value)

    def gpu_instance_id(self, mig: Handle) -> int | None:
        """GPU instance id (``GPU_I_ID``) of a MIG device handle."""
        return self._call(
            "nvmlDeviceGetGpuInstanceId", pynvml.nvmlDeviceGetGpuInstanceId, mig)

    # ----------------------------------------------------------------- probing

    def probe(self, index: int, *, with_instances: bool = True) -> GpuInfo:
        """Read the static identity of GPU ``index`` and enumerate its MIG instances.

        MIG devices are looked up for every index below the maximum count; gaps are skipped.
        A GPU instance split into several compute instances has several MIG devices with the
        same GPU instance id: it is one instance here (its first MIG device), since every
        instance-level field (memory, GPM, XIDs) belongs to the GPU instance. The profile
        (``GPU_I_PROFILE``) is :func:`gi_profile` of the MIG device's name.

        Raises:
            GpuLostError: the GPU is lost.
            NvmlError: another failure that makes the GPU unusable.
        """
        handle = self.handle(index)
        model = self.name(handle) or "Unknown"
        uuid = self.uuid(handle) or ""
        bus_id = self.pci_bus_id(handle) or ""
        entity = Entity(gpu=index, uuid=uuid, pci_bus_id=bus_id, model_name=model)
        mig_mode = self._call("nvmlDeviceGetMigMode", pynvml.nvmlDeviceGetMigMode, handle)
        mig_on = bool(mig_mode is not None and mig_mode[0])
        instances: list[MigDevice] = []
        if mig_on and with_instances:
            seen: set[int] = set()
            for mig_index, mig, gi_id in self._mig_devices(handle):
                if gi_id in seen:  # another compute instance of a split GPU instance
                    continue
                seen.add(gi_id)
                profile = gi_profile(self.name(mig) or "")
                instances.append(MigDevice(
                    Entity(gpu=index, uuid=uuid, pci_bus_id=bus_id, model_name=model,
                           gi_id=gi_id, gi_profile=profile,
                           mig_uuid=self.uuid(mig), mig_index=mig_index),
                    mig))
        return GpuInfo(
            entity=entity, handle=handle, mig_enabled=mig_on, instances=tuple(instances),
            gpm_supported=self.gpm_supported(handle), strings=self._strings(handle, entity),
            mig_capable=mig_mode is not None)

    def _mig_devices(self, handle: Handle) -> list[tuple[int, Handle, int]]:
        """(MIG device index, MIG handle, GPU instance id) of every MIG device; gaps skipped."""
        found = []
        for mig_index in range(self.max_mig_devices(handle)):
            mig = self.mig_handle(handle, mig_index)
            if mig is None:
                continue
            gi_id = self.gpu_instance_id(mig)
            if gi_id is not None:
                found.append((mig_index, mig, int(gi_id)))
        return found

    def mig_layout(self, handle: Handle) -> tuple[bool, tuple[tuple[int, int], ...]]:
        """Current MIG mode and (MIG device index, GPU instance id) pairs, to spot changes.

        One pair per GPU instance (its first MIG device), as :meth:`probe` lists instances.
        """
        if not self.mig_enabled(handle):
            return False, ()
        pairs: dict[int, int] = {}
        for index, _, gi_id in self._mig_devices(handle):
            pairs.setdefault(gi_id, index)
        return True, tuple((index, gi_id) for gi_id, index in pairs.items())

    def _strings(self, handle: Handle, entity: Entity) -> dict[int, str]:
        """Static string fields keyed by DCGM field id (missing ones left out).

        These only feed labels, so a failure other than GPU_IS_LOST (UNKNOWN, NO_PERMISSION,
        CORRUPTED_INFOROM, ...) leaves that label out (the error is counted) instead of
        keeping the whole GPU down.
        """
        readers: dict[int, Callable[[], str | None]] = {
            1: self.driver_version,
            2: self.nvml_version,
            51: lambda: self.brand(handle),
            53: lambda: self.serial(handle),
            56: lambda: self.inforom_version(handle, 0),
            80: lambda: self.inforom_version(handle, 1),
            81: lambda: self.inforom_version(handle, 2),
            82: lambda: self.inforom_image_version(handle),
            85: lambda: self.vbios_version(handle),
        }
        values: dict[int, str | None] = {
            50: entity.model_name, 54: entity.uuid, 57: entity.pci_bus_id}
        for fid, read in readers.items():
            values[fid] = self._label(read)
        return {fid: value for fid, value in sorted(values.items()) if value is not None}

    @staticmethod
    def _label(read: Callable[[], str | None]) -> str | None:
        """A label read: ``None`` on any failure but GPU_IS_LOST (already counted)."""
        try:
            return read()
        except GpuLostError:
            raise
        except NvmlError:
            return None

    # ----------------------------------------------------------------- readings

    def clock(self, handle: Handle, clock_type: int) -> int | None:
        """Current clock in MHz (0 graphics, 1 SM, 2 memory, 3 video)."""
        return self._uint("nvmlDeviceGetClockInfo", handle, clock_type)

    def max_clock(self, handle: Handle, clock_type: int) -> int | None:
        """Maximum clock in MHz."""
        return self._call(
            "nvmlDeviceGetMaxClockInfo", pynvml.nvmlDeviceGetMaxClockInfo, handle, clock_type)

    def applications_clock(self, handle: Handle, clock_type: int) -> int | None:
        """Applications clock target in MHz."""
        return self._call(
            "nvmlDeviceGetApplicationsClock", pynvml.nvmlDeviceGetApplicationsClock,
            handle, clock_type)

    def clocks_event_reasons(self, handle: Handle) -> int | None:
        """Current clock event (throttle) reasons bitmask.

        Uses ``nvmlDeviceGetCurrentClocksEventReasons``; a library without it falls back to
        ``nvmlDeviceGetCurrentClocksThrottleReasons`` once and for all.
        """
        if self._use_events_reasons:
            try:
                return self._uint64("nvmlDeviceGetCurrentClocksEventReasons", handle)
            except NvmlError as exc:
                if exc.code != FUNCTION_NOT_FOUND:
                    raise
                self._use_events_reasons = False
                self.switches += 1
        return self._call(
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, handle)

    def running_processes_raw(self, handle: Handle, kind: ProcessKind) -> bytes | None:
        """The ``nvmlProcessInfo_t`` entries of one kind, as NVML wrote them.

        24 bytes each (``pid``, padding, ``usedGpuMemory``, ``gpuInstanceId``,
        ``computeInstanceId``; see :data:`PROCESS_INFO`); ``None`` when NOT_SUPPORTED.

        The size protocol of nvml.h in one call while the list fits: the call is made with a
        buffer kept per calling thread and kind (sized from earlier answers);
        ``INSUFFICIENT_SIZE`` returns the count needed, the buffer grows to twice that and the
        call is repeated. ``_v3`` falls back to ``_v2`` (same layout) once and for all.
        """
        key = (threading.get_ident(), kind)
        buffer = self._process_buffers.get(key)
        if buffer is None:
            buffer = self._process_buffers[key] = _Buffer(PROCESS_INFO.size, 16)
        return self._list_into(handle, kind, buffer)

    def _list_into(self, handle: Handle, kind: ProcessKind, buffer: _Buffer) -> bytes | None:
        """:meth:`running_processes_raw` into ``buffer`` (the caller's, kept between calls).

        One call to the function that answered last time while the list fits; any other
        answer goes through the whole protocol (:meth:`_processes`).
        """
        fn = buffer.fn  # the function that filled this buffer last time
        if fn is None:
            return self._processes(handle, kind, buffer, None)
        count = buffer.count
        count.value = buffer.entries
        code = fn(handle, buffer.count_ref, buffer.pointer)
        if code == SUCCESS:
            return buffer.copy(min(count.value, buffer.entries))
        buffer.fn = None
        return self._processes(handle, kind, buffer, code)

    def _processes(self, handle: Handle, kind: ProcessKind, buffer: _Buffer,
                   code: int | None) -> bytes | None:
        """:meth:`running_processes_raw` from the start (``code``: its first call's answer)."""
        base = _PROCESS_FUNCTIONS[kind]
        function = base + ("_v3" if self._use_processes_v3 else "_v2")
        count = buffer.count
        for _ in range(4):
            fn = self._fns.get(function)
            if fn is None:
                try:
                    fn = self._fns[function] = pynvml._nvmlGetFunctionPointer(function)
                except pynvml.NVMLError as exc:
                    if int(exc.value) != FUNCTION_NOT_FOUND or not self._use_processes_v3:
                        raise self._failed(function, int(exc.value)) from None
                    self._use_processes_v3 = False
                    function = f"{base}_v2"
                    continue
            if code is None:
                count.value = buffer.entries
                code = fn(handle, buffer.count_ref, buffer.pointer)
            if code == SUCCESS:
                buffer.fn = fn
                buffer.name = function
                return buffer.copy(min(count.value, buffer.entries))
            if code == INSUFFICIENT_SIZE:
                buffer.grow(count.value * 2 + 5)
                code = None
                continue
            if code == NOT_SUPPORTED:
                return None
            if code in (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH) \
                    and self._use_processes_v3:
                self._use_processes_v3 = False
                function = f"{base}_v2"
                code = None
                continue
            raise self._failed(function, code)
        raise self._failed(function, INSUFFICIENT_SIZE)  # the list kept growing

    def process_utilization_raw(self, handle: Handle, last_seen_us: int) -> bytes | None:
        """A copy of :meth:`process_utilization_view`."""
        view = self.process_utilization_view(handle, last_seen_us)
        return None if view is None else bytes(view)

    def process_utilization_view(self, handle: Handle, last_seen_us: int,
                                 ) -> memoryview | bytes | None:
        """The process-utilisation samples strictly newer than ``last_seen_us``, as NVML wrote them.

        ``nvmlProcessUtilizationSample_t`` entries, 32 bytes each (``pid``, padding,
        ``timeStamp``, ``smUtil``, ``memUtil``, ``encUtil``, ``decUtil``; see
        :data:`PROCESS_SAMPLE`), oldest first; ``b""`` when nothing is newer (``NOT_FOUND``),
        ``None`` when NOT_SUPPORTED (MIG devices, a GPU in MIG mode, older GPUs, a driver
        without the function).

        nvml.h's size protocol, without its size query while the samples fit: the call is made
        with a buffer kept per calling thread, twice the largest answer so far plus
        :data:`SAMPLE_SLACK`. ``INSUFFICIENT_SIZE`` (with the count), or an answer that leaves
        less than :data:`SAMPLE_SLACK` free (a driver may return only the sample periods that
        fit: then the next period did not), grows it and asks again with the same
        ``lastSeenTimeStamp``, so every sample is read once and the reply is complete.

        A view of that buffer, not a copy: valid until the next call of this method in the
        same thread.
        """
        key = threading.get_ident()
        buffer = self._sample_buffers.get(key)
        if buffer is None:
            buffer = self._sample_buffers[key] = _Buffer(PROCESS_SAMPLE.size, 2 * SAMPLE_SLACK)
        return self._samples(handle, last_seen_us, buffer)

    def _samples(self, handle: Handle, last_seen_us: int, buffer: _Buffer,
                 first: int | None = None) -> memoryview | bytes | None:
        """:meth:`process_utilization_view` into ``buffer``.

        ``first``: the answer of a first call already made (by compiled code, through the
        same entry point, with this ``last_seen_us`` and ``buffer``'s count): it is the
        first of the tries.
        """
        function = "nvmlDeviceGetProcessUtilization"
        fn = buffer.fn or self._fns.get(function)
        if fn is None:
            try:
                fn = self._fns[function] = pynvml._nvmlGetFunctionPointer(function)
            except pynvml.NVMLError as exc:
                if int(exc.value) == FUNCTION_NOT_FOUND:  # a driver without it: not supported
                    return None
                raise self._failed(function, int(exc.value)) from None
        buffer.fn = fn
        count = buffer.count
        stamp = ctypes.c_ulonglong(last_seen_us)
        code = INSUFFICIENT_SIZE
        for _ in range(4):  # samples keep coming: grow and ask again
            if first is None:
                count.value = buffer.entries
                code = fn(handle, buffer.pointer, buffer.count_ref, stamp)
            else:
                code, first = first, None
            if code == INSUFFICIENT_SIZE or (
                    code == SUCCESS and count.value + SAMPLE_SLACK > buffer.entries):
                buffer.grow(count.value * 2 + SAMPLE_SLACK)  # perhaps cut short: ask again
                continue
            break
        if code == NOT_FOUND:
            return b""
        if code == NOT_SUPPORTED:
            return None
        if code != SUCCESS:
            raise self._failed(function, code)
        return buffer.view(min(count.value, buffer.entries))

    def _failed(self, function: str, code: int) -> NvmlError:
        """Count a failed call and build its error (``GpuLostError`` for a lost GPU)."""
        self._count(function, code)
        if code == GPU_IS_LOST:
            return GpuLostError(function, code)
        return NvmlError(function, code)

    def _uint64(self, function: str, handle: Handle) -> int | None:
        """A direct call with one ``unsigned long long`` out-parameter (as :meth:`_uint`)."""
        out = ctypes.c_ulonglong()
        code = (self._fns.get(function) or self._fn(function))(handle, _byref(out))
        if code == SUCCESS:
            return int(out.value)
        if code == NOT_SUPPORTED:
            return None
        raise self._failed(function, code)

    def performance_state(self, handle: Handle) -> int | None:
        """P-state 0-15."""
        return self._call(
            "nvmlDeviceGetPerformanceState", pynvml.nvmlDeviceGetPerformanceState, handle)

    def temperature(self, handle: Handle) -> int | None:
        """GPU core temperature in °C (``TemperatureV``, else the deprecated call)."""
        if self._use_temperature_v:
            reading = _TemperatureV1(version=_TEMPERATURE_V1_VERSION, sensorType=0)
            try:
                if not self._struct("nvmlDeviceGetTemperatureV", handle, reading):
                    return None
                return int(reading.temperature)
            except NvmlError as exc:
                if exc.code not in (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):
                    raise
                self._use_temperature_v = False
                self.switches += 1
        return self._call(
            "nvmlDeviceGetTemperature", pynvml.nvmlDeviceGetTemperature, handle, 0)

    def fan_speed(self, handle: Handle) -> int | None:
        """Fan speed in percent."""
        return self._call("nvmlDeviceGetFanSpeed", pynvml.nvmlDeviceGetFanSpeed, handle)

    def power_usage(self, handle: Handle) -> int | None:
        """Board power draw in mW."""
        return self._uint("nvmlDeviceGetPowerUsage", handle)

    def total_energy(self, handle: Handle) -> int | None:
        """Energy since the driver was loaded, in mJ."""
        return self._call(
            "nvmlDeviceGetTotalEnergyConsumption",
            pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)

    def power_limit(self, handle: Handle) -> int | None:
        """Power management limit in mW."""
        return self._uint("nvmlDeviceGetPowerManagementLimit", handle)

    def power_limit_constraints(self, handle: Handle) -> tuple[int, int] | None:
        """(min, max) settable power limit in mW."""
        value = self._call(
            "nvmlDeviceGetPowerManagementLimitConstraints",
            pynvml.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        return None if value is None else (int(value[0]), int(value[1]))

    def power_limit_default(self, handle: Handle) -> int | None:
        """Default power limit in mW."""
        return self._call(
            "nvmlDeviceGetPowerManagementDefaultLimit",
            pynvml.nvmlDeviceGetPowerManagementDefaultLimit, handle)

    def enforced_power_limit(self, handle: Handle) -> int | None:
        """Power limit the driver enforces, in mW."""
        return self._call(
            "nvmlDeviceGetEnforcedPowerLimit", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)

    def utilization(self, handle: Handle) -> tuple[int, int] | None:
        """(gpu, memory) utilisation in percent; ``None`` on MIG handles."""
        rates = _Utilization()
        if not self._struct("nvmlDeviceGetUtilizationRates", handle, rates):
            return None
        return (int(rates.gpu), int(rates.memory))

    def encoder_utilization(self, handle: Handle) -> int | None:
        """Encoder utilisation in percent."""
        return self._coder("nvmlDeviceGetEncoderUtilization", handle)

    def decoder_utilization(self, handle: Handle) -> int | None:
        """Decoder utilisation in percent."""
        return self._coder("nvmlDeviceGetDecoderUtilization", handle)

    def _coder(self, function: str, handle: Handle,
               out: tuple[Any, Any, Any] | None = None) -> int | None:
        """Encoder/decoder utilisation: (utilisation, sampling period) out-parameters.

        ``out``: the caller's own (utilisation, its reference, the period's reference), reused
        from call to call; else made for this call.
        """
        if out is None:
            util, period = _c_uint(), _c_uint()
            util_ref, period_ref = _byref(util), _byref(period)
        else:
            util, util_ref, period_ref = out
        code = (self._fns.get(function) or self._fn(function))(handle, util_ref, period_ref)
        if code == SUCCESS:
            return int(util.value)
        if code == NOT_SUPPORTED:
            return None
        raise self._failed(function, code)

    def memory_info(self, handle: Handle) -> MemoryInfo | None:
        """Framebuffer memory (v2 struct with ``reserved``; v1 where v2 is missing)."""
        if self._use_memory_v2:
            mem2 = _MemoryV2(version=_MEMORY_V2_VERSION)
            try:
                if not self._struct("nvmlDeviceGetMemoryInfo_v2", handle, mem2):
                    return None
            except NvmlError as exc:
                if exc.code not in (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):
                    raise
                self._use_memory_v2 = False
                self.switches += 1
            else:
                return MemoryInfo(int(mem2.total), int(mem2.free), int(mem2.used),
                                  int(mem2.reserved))
        mem = _Memory()
        if not self._struct("nvmlDeviceGetMemoryInfo", handle, mem):
            return None
        return MemoryInfo(int(mem.total), int(mem.free), int(mem.used), None)

    def process_reader(self) -> ProcessReader:
        """A :class:`ProcessReader` of this library (buffers of its own: one caller at a time)."""
        return ProcessReader(self)

    def bar1_memory(self, handle: Handle) -> MemoryInfo | None:
        """BAR1 memory in bytes (``reserved`` is None)."""
        mem = self._call(
            "nvmlDeviceGetBAR1MemoryInfo", pynvml.nvmlDeviceGetBAR1MemoryInfo, handle)
        if mem is None:
            return None
        return MemoryInfo(int(mem.bar1Total), int(mem.bar1Free), int(mem.bar1Used), None)

    def pcie_link(self, handle: Handle) -> tuple[int | None, int | None, int | None, int | None]:
        """(max generation, max width, current generation, current width)."""
        return (
            self._call("nvmlDeviceGetMaxPcieLinkGeneration",
                       pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
            self._call("nvmlDeviceGetMaxPcieLinkWidth",
                       pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
            self._call("nvmlDeviceGetCurrPcieLinkGeneration",
                       pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle),
            self._call("nvmlDeviceGetCurrPcieLinkWidth",
                       pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle),
        )

    def field_values(
        self, handle: Handle, requests: Sequence[tuple[int, int]],
    ) -> list[FieldReading] | None:
        """One batched ``nvmlDeviceGetFieldValues`` call; each entry decoded on its own.

        The ``nvmlFieldValue_t`` array for a given request list is allocated once per calling
        thread and reused (the GPUs are read concurrently, one worker thread each); entries are
        decoded straight from the array's bytes, by each entry's own ``valueType`` and
        ``nvmlReturn``.

        Args:
            handle: device handle.
            requests: (NVML field id, scope id) pairs.

        Returns:
            One reading per request, in order; ``None`` if the whole call is NOT_SUPPORTED.
            Entry failures other than NOT_SUPPORTED are counted as errors of
            ``nvmlDeviceGetFieldValues``.
        """
        key = (threading.get_ident(), tuple(requests))
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _FieldBatch(key[1])
        function = "nvmlDeviceGetFieldValues"
        try:
            raw = batch.fill(handle)
        except pynvml.NVMLError as exc:
            code = int(exc.value)
            if code == NOT_SUPPORTED:
                return None
            self._count(function, code)
            if code == GPU_IS_LOST:
                raise GpuLostError(function, code) from None
            raise NvmlError(function, code) from None
        out: list[FieldReading] = []
        new = _new_reading
        for field_id, scope_id, stamp, _latency, value_type, code, bits in \
                _ENTRY_BITS.iter_unpack(raw):
            number: float | None = None
            if code == SUCCESS:  # the common types inline (decode_value_bits)
                if value_type == _UNSIGNED_LONG_LONG:
                    number = float(bits)
                elif value_type == _UNSIGNED_INT:
                    number = float(bits & 0xFFFFFFFF)
                else:
                    number = decode_value_bits(value_type, bits)
            elif code != NOT_SUPPORTED:
                self._count(function, code)
            out.append(new(FieldReading, (field_id, scope_id, number, code, stamp)))
        return out

    def p2p_status(self, handle: Handle, peer: Handle, caps_index: int = 2) -> int | None:
        """``nvmlDeviceGetP2PStatus`` (default capability: NVLink): 0 OK, 1-6 reasons."""
        return self._call(
            "nvmlDeviceGetP2PStatus", pynvml.nvmlDeviceGetP2PStatus, handle, peer, caps_index)

    def virtualization_mode(self, handle: Handle) -> int | None:
        """0 none, 1 passthrough, 2 vGPU guest, 3 host vGPU, 4 host vSGA."""
        return self._call(
            "nvmlDeviceGetVirtualizationMode", pynvml.nvmlDeviceGetVirtualizationMode, handle)

    def vgpu_licensed(self, handle: Handle) -> bool | None:
        """In a vGPU guest: True when a licensable feature is licensed (``featureState`` 1)."""
        features = self._call(
            "nvmlDeviceGetGridLicensableFeatures_v4",
            pynvml.nvmlDeviceGetGridLicensableFeatures_v4, handle)
        if features is None or not features.isGridLicenseSupported:
            return None
        count = min(int(features.licensableFeaturesCount), len(features.gridLicensableFeatures))
        return any(int(features.gridLicensableFeatures[i].featureState) == 1
                   for i in range(count))

    def inforom_valid(self, handle: Handle) -> bool | None:
        """``nvmlDeviceValidateInforom``: False on CORRUPTED_INFOROM, None when unsupported."""
        try:
            return self._call_ok(
                "nvmlDeviceValidateInforom", pynvml.nvmlDeviceValidateInforom, handle) or None
        except NvmlError as exc:
            if exc.code == CORRUPTED_INFOROM:
                return False
            raise

    # ----------------------------------------------------------------- GPM

    def gpm_supported(self, handle: Handle) -> bool:
        """GPM support of a whole GPU (False on pre-Hopper GPUs and old libraries)."""
        try:
            support = self._call(
                "nvmlGpmQueryDeviceSupport", pynvml.nvmlGpmQueryDeviceSupport, handle)
        except NvmlError as exc:
            if isinstance(exc, GpuLostError):
                raise
            return False
        return bool(support is not None and support.isSupportedDevice)

    def gpm_sample_alloc(self) -> GpmSample:
        """Allocate one GPM sample buffer."""
        value = self._call("nvmlGpmSampleAlloc", pynvml.nvmlGpmSampleAlloc)
        if value is None:
            raise NvmlError("nvmlGpmSampleAlloc", NOT_SUPPORTED)
        return GpmSample(value)

    @staticmethod
    def gpm_sample_address(sample: GpmSample) -> int:
        """The C value of a GPM sample handle (``nvmlGpmSample_t``), for a compiled caller."""
        return ctypes.cast(sample, ctypes.c_void_p).value or 0  # type: ignore[arg-type]

    @staticmethod
    def gpm_request_address(request: GpmRequest) -> int:
        """The address of a request's ``nvmlGpmMetricsGet_t``, for a compiled caller."""
        return ctypes.addressof(request.struct)

    def gpm_sample_free(self, sample: GpmSample) -> None:
        """Free a GPM sample buffer."""
        self._call("nvmlGpmSampleFree", pynvml.nvmlGpmSampleFree, sample)

    def gpm_sample(self, handle: Handle, sample: GpmSample, gi_id: int | None = None) -> bool:
        """Take a GPM sample of a whole GPU or (with ``gi_id``) one of its GPU instances.

        Returns:
            False when NOT_SUPPORTED.
        """
        if gi_id is None:
            function = "nvmlGpmSampleGet"
            code = self._fn(function)(handle, sample)
        else:
            function = "nvmlGpmMigSampleGet"
            code = self._fn(function)(handle, gi_id, sample)
        if code == SUCCESS:
            return True
        if code == NOT_SUPPORTED:
            return False
        raise self._failed(function, code)

    def gpm_metrics(
        self, request: GpmRequest, first: GpmSample, second: GpmSample,
    ) -> dict[int, float | None]:
        """Compute the request's GPM metrics over two samples.

        Returns:
            GPM metric id -> value, or ``None`` for a metric NOT_SUPPORTED on its own (on MIG
            instances, for example); a metric that failed otherwise is left out (and counted).
        """
        head = request.head
        head.sample1 = first
        head.sample2 = second
        code = self._fn("nvmlGpmMetricsGet")(request.ref)
        if code == NOT_SUPPORTED:
            return dict.fromkeys(request.metric_ids)
        if code != SUCCESS:
            raise self._failed("nvmlGpmMetricsGet", code)
        out: dict[int, float | None] = {}
        for metric_id, code, value in _GPM_METRIC.iter_unpack(request.results):
            if code == SUCCESS:
                out[metric_id] = value
            elif code == NOT_SUPPORTED:
                out[metric_id] = None
            else:
                self._count("nvmlGpmMetricsGet", code)
        return out

    # ----------------------------------------------------------------- events

    def event_set_create(self) -> EventSet:
        """Create an event set."""
        value = self._call("nvmlEventSetCreate", pynvml.nvmlEventSetCreate)
        if value is None:
            raise NvmlError("nvmlEventSetCreate", NOT_SUPPORTED)
        return EventSet(value)

    def event_set_free(self, event_set: EventSet) -> None:
        """Free an event set."""
        self._call("nvmlEventSetFree", pynvml.nvmlEventSetFree, event_set)

    def supported_event_types(self, handle: Handle) -> int:
        """Bitmask of event types the GPU can deliver (0 when unsupported)."""
        value = self._call(
            "nvmlDeviceGetSupportedEventTypes", pynvml.nvmlDeviceGetSupportedEventTypes, handle)
        return int(value or 0)

    def register_events(self, handle: Handle, mask: int, event_set: EventSet) -> bool:
        """Register a GPU's events of ``mask`` in the set; False when NOT_SUPPORTED."""
        return self._call_ok(
            "nvmlDeviceRegisterEvents", pynvml.nvmlDeviceRegisterEvents, handle, mask,
            event_set)

    def event_wait(
        self, event_set: EventSet, timeout_ms: int, gpus_by_address: dict[int, int],
    ) -> NvmlEvent | None:
        """Wait up to ``timeout_ms`` for one event (``nvmlEventSetWait_v2``).

        Args:
            event_set: the set to wait on.
            timeout_ms: how long to block.
            gpus_by_address: device-handle address -> GPU index, to name the event's GPU.

        Returns:
            The event, or ``None`` on timeout.
        """
        data = self._call(
            "nvmlEventSetWait_v2", pynvml.nvmlEventSetWait_v2, event_set, timeout_ms,
            absent=(TIMEOUT,))
        if data is None:
            return None
        gi = int(data.gpuInstanceId)
        ci = int(data.computeInstanceId)
        return NvmlEvent(
            gpu=gpus_by_address.get(_address(data.device)),
            event_type=int(data.eventType),
            data=int(data.eventData),
            gi_id=None if gi == NO_SCOPE_ID else gi,
            ci_id=None if ci == NO_SCOPE_ID else ci,
        )

    @staticmethod
    def handle_address(handle: Handle) -> int:
        """Numeric identity of a handle, to match event devices to GPUs."""
        return _address(handle)


class GpmRequest:
    """A reusable ``nvmlGpmMetricsGet`` argument (a ~19 KB struct, allocated once).

    The metric ids are written once; results are read straight from the struct's bytes.

    Args:
        metric_ids: GPM metric ids to compute on each call.
    """

    def __init__(self, metric_ids: Iterable[int]) -> None:
        self.metric_ids: tuple[int, ...] = tuple(metric_ids)
        self.struct: Any = pynvml.c_nvmlGpmMetricsGet_t()
        self.struct.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        self.struct.numMetrics = len(self.metric_ids)
        for i, metric_id in enumerate(self.metric_ids):
            self.struct.metrics[i].metricId = metric_id
        offset = pynvml.c_nvmlGpmMetricsGet_t.metrics.offset
        self.metrics_address = ctypes.addressof(self.struct) + offset
        self.metrics_size = _GPM_METRIC.size * len(self.metric_ids)
        self.head: Any = _GpmMetricsHead.from_buffer(self.struct)  # same memory, plain fields
        self.ref = ctypes.byref(self.struct)
        # the results' bytes in place (a buffer over the struct: read without a copy)
        self.results: Any = (ctypes.c_char * self.metrics_size).from_buffer(self.struct, offset)


# Plain ctypes structures of the per-cycle reads (layouts of nvml.h), read without pynvml's
# printable wrapper, whose attribute hooks run Python code on every field access.


_VERSIONED = {
    "temperature": ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
    "memory_info": ("nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"),
    "clocks_event_reasons": ("nvmlDeviceGetCurrentClocksEventReasons",
                             "nvmlDeviceGetCurrentClocksThrottleReasons"),
}
"""The reads with a versioned entry point: (newer, older)."""
_VERSIONED_FLAG = {"temperature": "_use_temperature_v", "memory_info": "_use_memory_v2",
                   "clocks_event_reasons": "_use_events_reasons"}
_FALLBACK_CODES = {
    "temperature": (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH),
    "memory_info": (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH),
    "clocks_event_reasons": (FUNCTION_NOT_FOUND,),
}
"""The answers on which each direct read switches to the older entry point for good."""

_c_uint = ctypes.c_uint
_byref = ctypes.byref


class _Memory(ctypes.Structure):
    _fields_ = (("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong))


class _MemoryV2(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint), ("total", ctypes.c_ulonglong),
                ("reserved", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong))


_MEMORY_V2_VERSION = ctypes.sizeof(_MemoryV2) | 2 << 24  # nvmlMemory_v2


class _Utilization(ctypes.Structure):
    _fields_ = (("gpu", ctypes.c_uint), ("memory", ctypes.c_uint))


class _TemperatureV1(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint), ("sensorType", ctypes.c_uint),
                ("temperature", ctypes.c_int))


_TEMPERATURE_V1_VERSION = ctypes.sizeof(_TemperatureV1) | 1 << 24  # nvmlTemperature_v1


class _GpmMetricsHead(ctypes.Structure):
    """The first fields of ``nvmlGpmMetricsGet_t``, laid over pynvml's struct (same memory)."""

    _fields_ = (("version", ctypes.c_uint), ("numMetrics", ctypes.c_uint),
                ("sample1", pynvml.c_nvmlGpmSample_t), ("sample2", pynvml.c_nvmlGpmSample_t))


_GPM_METRIC = struct.Struct("<IId24x")
"""Layout of ``nvmlGpmMetric_t`` (40 bytes): id, return code, value, info pointers."""


PROCESS_INFO = struct.Struct("<I4xQII")
"""Layout of ``nvmlProcessInfo_t`` (= ``_v2_t``, 24 bytes): pid, used memory, GI id, CI id."""

PROCESS_SAMPLE = struct.Struct("<I4xQIIII")
"""Layout of ``nvmlProcessUtilizationSample_t`` (32 bytes): pid, timestamp, sm/mem/enc/dec
(read as columns of native-endian words: the struct is naturally aligned)."""

SAMPLE_SLACK = 1024
"""Free process-utilisation entries a complete answer leaves (more than one sample period's
samples: one per process on the GPU; 32 KiB)."""

VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF
"""``NVML_VALUE_NOT_AVAILABLE`` as an unsigned long long."""

_PROCESS_FUNCTIONS: dict[str, str] = {
    "compute": "nvmlDeviceGetComputeRunningProcesses",
    "graphics": "nvmlDeviceGetGraphicsRunningProcesses",
    "mps": "nvmlDeviceGetMPSComputeRunningProcesses",
}


class _Buffer:
    """A reusable array of fixed-size NVML structs, read back as bytes."""

    def __init__(self, item_size: int, entries: int) -> None:
        self.item_size = item_size
        self.count = ctypes.c_uint(0)  # the count in-out argument of the calls that use it
        self.count_ref = ctypes.byref(self.count)
        self.entries = 0
        self.array: Any = None
        self.pointer: Any = None
        self.fn: Any = None  # the NVML function that filled it last
        self.name = ""  # its name (the process lists')
        self._view: tuple[int, memoryview] | None = None  # the last view and its entries
        self.grow(entries)

    def grow(self, entries: int) -> None:
        """Make room for at least ``entries`` structs (contents are not kept)."""
        if entries <= self.entries:
            return
        self.entries = entries
        self.array = (ctypes.c_char * (self.item_size * entries))()
        self.pointer = ctypes.cast(self.array, ctypes.c_void_p)
        self._view = None

    def view(self, entries: int) -> memoryview:
        """The bytes of the first ``entries`` structs.

        The same view as last time for the same count: a view of the array, whose contents
        the next call rewrites.
        """
        last = self._view
        if last is not None and last[0] == entries:
            return last[1]
        view = memoryview(self.array).cast("B")[:entries * self.item_size]
        self._view = (entries, view)
        return view

    def copy(self, entries: int) -> bytes:
        """A copy of the first ``entries`` structs."""
        data: bytes = self.array[:entries * self.item_size]  # a char array's slice: bytes
        return data


_PROCESS_KINDS: tuple[ProcessKind, ...] = ("mps", "compute", "graphics")


class ReadPlan(NamedTuple):
    """A :class:`ProcessReader`'s read for compiled code that makes it (addresses, sizes).

    The entry points are those that answered the reader's last read (the MPS-client, compute
    and graphics lists, ``nvmlDeviceGetMemoryInfo_v2``, ``nvmlDeviceGetProcessUtilization``;
    ``samples_fn`` 0 where the read has no samples; the encoder's and decoder's utilisation
    where asked for, else 0), by :meth:`Nvml.entry_address`; the buffers, their count
    arguments and the memory structure are the reader's. Valid while
    :attr:`ProcessReader.generation` stays the same.
    """

    handle: int
    list_fns: tuple[int, int, int]
    lists: tuple[int, int, int]
    list_counts: tuple[int, int, int]
    list_entries: tuple[int, int, int]
    memory_fn: int
    memory: int
    samples_fn: int
    samples: int
    sample_count: int
    sample_entries: int
    sample_slack: int
    coder_fns: tuple[int, int]


READ_CALLS = 7
"""The calls of one read in their order (a compiled read's ``failed``): the MPS-client,
compute and graphics lists, memory, samples, encoder, decoder; 7: none failed."""
CODER_CALL = 5
"""The first coder's (the encoder's) place among them: a read that answered otherwise before
it made neither coder's call."""
_CODER_FUNCTIONS = ("nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization")


class ProcessReader:
    """The per-process reads of one GPU or MIG device, cycle after cycle, for one caller.

    The workload collector's reads (:meth:`lists`, :meth:`memory_used`, :meth:`samples`):
    what :meth:`Nvml.running_processes_raw`, :meth:`Nvml.memory_info` and
    :meth:`Nvml.process_utilization_view` do, with buffers, structures and entry points of
    its own, kept from call to call: while a call answers as it did last time nothing is
    looked up or allocated. Any other answer goes through :class:`Nvml`'s own path (its
    fallbacks, errors and their counts). Used by one thread at a time (one GPU's worker);
    the answers' rules are :class:`Nvml`'s.

    The same read can be made by compiled code (:meth:`plan`: the entry points and buffers;
    :meth:`complete`: what it read, and from the call that answered otherwise on, the rest
    of the read by these rules).
    """

    __slots__ = ("_coder", "_lists", "_memory", "_memory_fn", "_memory_ref", "_nvml", "_sampled",
                 "_samples", "_stamp", "generation")

    def __init__(self, nvml: Nvml) -> None:
        self._nvml = nvml
        self._lists = tuple((kind, _Buffer(PROCESS_INFO.size, 16)) for kind in _PROCESS_KINDS)
        self._samples = _Buffer(PROCESS_SAMPLE.size, 2 * SAMPLE_SLACK)
        self._stamp = ctypes.c_ulonglong(0)  # lastSeenTimeStamp, passed by value
        util, period = _c_uint(), _c_uint()  # utilisation, sampling period (not used)
        self._coder = (util, _byref(util), _byref(period))

        self._memory = _MemoryV2(version=_MEMORY_V2_VERSION)
        self._memory_ref = _byref(self._memory)
        self._memory_fn: Callable[..., int] | None = None  # the v2 call, once it answered
        self._sampled = False  # the last samples read answered (with samples or none newer)
        self.generation = 0
        """Moves on with every read made here (its buffers or entry points may have changed:
        a :class:`ReadPlan` made before is stale)."""

    def lists(self, handle: Handle) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The raw MPS-client, compute and graphics lists (:meth:`Nvml.running_processes_raw`)."""
        self.generation += 1
        list_into = self._nvml._list_into
        (mps, mps_buffer), (compute, compute_buffer), (graphics, graphics_buffer) = self._lists
        return (list_into(handle, mps, mps_buffer), list_into(handle, compute, compute_buffer),
                list_into(handle, graphics, graphics_buffer))

    def memory_used(self, handle: Handle) -> int | None:
        """Used framebuffer memory in bytes (:meth:`Nvml.memory_info`'s ``used``)."""
        self.generation += 1
        fn = self._memory_fn
        if fn is not None:
            if fn(handle, self._memory_ref) == SUCCESS:
                used: int = self._memory.used
                return used
            self._memory_fn = None
        nvml = self._nvml
        info = nvml.memory_info(handle)
        if info is not None and nvml._use_memory_v2:  # v2 answered: call it directly now
            self._memory_fn = nvml._fns.get("nvmlDeviceGetMemoryInfo_v2")
        return None if info is None else info.used

    def samples(self, handle: Handle, last_seen_us: int) -> memoryview | bytes | None:
        """:meth:`Nvml.process_utilization_view`, a view valid until this reader's next call.

        While the samples fit with room to spare, one call; any other answer is asked again
        by :class:`Nvml`'s protocol (with the same ``lastSeenTimeStamp``: nothing is lost).
        """
        self.generation += 1
        buffer = self._samples
        fn = buffer.fn
        if fn is not None:
            count = buffer.count
            count.value = entries = buffer.entries
            stamp = self._stamp
            stamp.value = last_seen_us
            code = fn(handle, buffer.pointer, buffer.count_ref, stamp)
            if code == SUCCESS and count.value + SAMPLE_SLACK <= entries:
                self._sampled = True
                return buffer.view(count.value)
            if code == NOT_FOUND:
                self._sampled = True
                return b""
        view = self._nvml._samples(handle, last_seen_us, buffer)
        self._sampled = view is not None
        return view

    def plan(self, handle: Handle, *, samples: bool,
             coders: tuple[bool, bool] = (False, False)) -> ReadPlan | None:
        """The next read of ``handle`` for compiled code (``None``: not yet).

        ``None`` while some call of it did not answer last time (made here then:
        :meth:`lists`, ...).

        ``samples``: with the process-utilisation samples (a whole GPU's read); ``coders``:
        with the encoder's, the decoder's utilisation (:meth:`coder_utilization`; only with
        samples).

        Raises:
            NvmlError: a coder's entry point is missing (as :meth:`coder_utilization`).
        """
        lists = self._lists
        if any(buffer.fn is None for _, buffer in lists) or self._memory_fn is None \
                or (samples and not self._sampled):
            return None
        address = self._nvml.entry_address
        mps, compute, graphics = (buffer for _, buffer in lists)
        samples_buffer = self._samples
        return ReadPlan(
            _address(handle),
            (address(mps.name), address(compute.name), address(graphics.name)),
            (ctypes.addressof(mps.array), ctypes.addressof(compute.array),
             ctypes.addressof(graphics.array)),
            (ctypes.addressof(mps.count), ctypes.addressof(compute.count),
             ctypes.addressof(graphics.count)),
            (mps.entries, compute.entries, graphics.entries),
            address("nvmlDeviceGetMemoryInfo_v2"), ctypes.addressof(self._memory),
            address("nvmlDeviceGetProcessUtilization") if samples else 0,
            ctypes.addressof(samples_buffer.array), ctypes.addressof(samples_buffer.count),
            samples_buffer.entries, SAMPLE_SLACK,
            (address(_CODER_FUNCTIONS[0]) if samples and coders[0] else 0,
             address(_CODER_FUNCTIONS[1]) if samples and coders[1] else 0))

    def complete(self, handle: Handle, last_seen_us: int, failed: int, code: int, *,
                 samples: bool) -> tuple[tuple[bytes | None, bytes | None, bytes | None],
                                         int | None, memoryview | bytes | None]:
        """The read a compiled call made of a :meth:`plan`: lists, used memory, samples.

        Its answers up to the call ``failed`` (:data:`READ_CALLS`: all of them) as they are
        in the buffers; that call's answer ``code`` goes on by :class:`Nvml`'s protocol (a
        buffer grown and asked again, with the same ``last_seen_us`` for the samples; the
        ``_v2`` fallbacks; NOT_SUPPORTED; the counted error), and the calls after it are
        made here. ``samples`` as for :meth:`plan` (``None`` without them). A coder's answer
        (when it is the one) raises its counted error; the coders' answers that came are the
        caller's to read.

        Raises:
            NvmlError: as :meth:`lists`, :meth:`memory_used`, :meth:`samples` and
                :meth:`coder_utilization` do.
        """
        nvml = self._nvml
        if failed < READ_CALLS:
            self.generation += 1
        lists: list[bytes | None] = []
        for call, (kind, buffer) in enumerate(self._lists):
            if call < failed:
                lists.append(buffer.copy(min(buffer.count.value, buffer.entries)))
            elif call == failed:
                buffer.fn = None
                lists.append(nvml._processes(handle, kind, buffer, code))
            else:
                lists.append(nvml._list_into(handle, kind, buffer))
        memory: int | None
        if failed > _MEMORY_CALL:
            memory = self._memory.used
        elif failed == _MEMORY_CALL:
            memory = self._memory_answer(handle, code)
        else:
            memory = self.memory_used(handle)
        view = self._complete_samples(handle, last_seen_us, failed, code) if samples else None
        return (lists[0], lists[1], lists[2]), memory, view

    def _complete_samples(self, handle: Handle, last_seen_us: int, failed: int, code: int,
                          ) -> memoryview | bytes | None:
        """:meth:`complete`'s samples (and a coder's answer, raised)."""
        buffer = self._samples
        view: memoryview | bytes | None
        if failed > _SAMPLES_CALL:
            view = buffer.view(min(buffer.count.value, buffer.entries))
        elif failed == _SAMPLES_CALL:
            view = self._nvml._samples(handle, last_seen_us, buffer, code)
            self._sampled = view is not None
        else:
            view = self.samples(handle, last_seen_us)
        if _SAMPLES_CALL < failed < READ_CALLS:
            raise self._nvml.failure(_CODER_FUNCTIONS[failed - CODER_CALL], code)
        return view

    def _memory_answer(self, handle: Handle, code: int) -> int | None:
        """:meth:`memory_used` from the answer ``code`` of ``nvmlDeviceGetMemoryInfo_v2``."""
        self._memory_fn = None
        nvml = self._nvml
        if code == NOT_SUPPORTED:
            return None
        if code in (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):  # as memory_info: v1
            nvml._use_memory_v2 = False
            info = nvml.memory_info(handle)
            return None if info is None else info.used
        raise nvml.failure("nvmlDeviceGetMemoryInfo_v2", code)

    def coder_utilization(self, handle: Handle, *, decoder: bool) -> int | None:
        """:meth:`Nvml.encoder_utilization` or ``decoder_utilization``, reusing its arguments."""
        function = "nvmlDeviceGetDecoderUtilization" if decoder else \
            "nvmlDeviceGetEncoderUtilization"
        return self._nvml._coder(function, handle, self._coder)


_MEMORY_CALL, _SAMPLES_CALL = 3, 4


_ENTRY_BITS = struct.Struct("<IIqqIIQ")
"""Layout of ``nvmlFieldValue_t`` (40 bytes): ids, timestamp, latency, type, return, and the
value union read as its 64 bits (little-endian: an ``unsigned int`` is the low 32)."""
_UNSIGNED_INT, _UNSIGNED_LONG_LONG = 1, 3
_new_reading: Callable[[type[FieldReading], tuple[int, int, float | None, int, int]],
                       FieldReading] = tuple.__new__
"""``FieldReading(...)`` without the named tuple's Python-level ``__new__``."""

_VALUE_FORMATS: dict[int, struct.Struct] = {
    0: struct.Struct("<d"), 1: struct.Struct("<I"), 2: struct.Struct("<Q"),
    3: struct.Struct("<Q"), 4: struct.Struct("<q"), 5: struct.Struct("<i"), 6: struct.Struct("<H"),
}


class _FieldBatch:
    """A preallocated ``nvmlFieldValue_t`` array for one request list."""

    def __init__(self, requests: tuple[tuple[int, int], ...]) -> None:
        self.count = ctypes.c_int32(len(requests))
        self.array: ctypes.Array[Any] = (pynvml.c_nvmlFieldValue_t * len(requests))()
        for entry, (field_id, scope_id) in zip(self.array, requests, strict=True):
            entry.fieldId = field_id
            entry.scopeId = scope_id
        self.pointer = ctypes.byref(self.array)
        self.size = ctypes.sizeof(self.array)
        self._fn: Callable[..., int] | None = None

    def fill(self, handle: Handle) -> ctypes.Array[Any]:
        """Fill the array for ``handle`` and return it (raises pynvml errors).

        The array itself, read as a buffer without a copy: decode it before the next call.
        """
        fn = self._fn
        if fn is None:  # looked up once (pynvml's lookup takes a lock)
            fn = self._fn = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")
        code = fn(handle, self.count, self.pointer)
        if code != SUCCESS:
            raise pynvml.NVMLError(code)
        return self.array


def field_entries(requests: Sequence[tuple[int, int]]) -> ctypes.Array[Any]:
    """An ``nvmlFieldValue_t`` array for ``requests`` ((field id, scope id) pairs, set in order).

    For a compiled caller of ``nvmlDeviceGetFieldValues`` (:mod:`gpu_exporter.fastread`): the
    entry layout stays this module's.
    """
    return _FieldBatch(tuple(requests)).array


def decode_value_bits(value_type: int, bits: int) -> float | None:
    """:func:`decode_value_bytes` of the union read as one little-endian 64-bit word.

    The common types (unsigned long long, unsigned int) straight from the bits.
    """
    if value_type == _UNSIGNED_LONG_LONG:
        return float(bits)
    if value_type == _UNSIGNED_INT:
        return float(bits & 0xFFFFFFFF)
    return decode_value_bytes(value_type, bits.to_bytes(8, "little"))


def decode_value_bytes(value_type: int, raw: bytes) -> float | None:
    """Decode the 8-byte ``nvmlValue_t`` union by its ``valueType``.

    A DOUBLE that is NaN or denormal-tiny (the r545 quirk: an integer in ``uiVal`` typed
    DOUBLE) is re-read as an unsigned int.
    """
    fmt = _VALUE_FORMATS.get(value_type)
    if fmt is None:
        return None
    number = float(fmt.unpack_from(raw)[0])
    if value_type == 0 and (number != number or (number != 0.0 and abs(number) < 1e-300)):  # noqa: PLR0124
        return float(_VALUE_FORMATS[1].unpack_from(raw)[0])
    return number


_VALUE_ATTR: dict[int, str] = {
    0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal",
}


def decode_field_value(value_type: int, union: object) -> float | None:
    """Read an ``nvmlValue_t`` union by the entry's own ``valueType``.

    A DOUBLE that is not finite or absurdly small (the r545 quirk of an integer stored in
    ``uiVal`` but typed DOUBLE) is re-read as an unsigned int.
    """
    attr = _VALUE_ATTR.get(value_type)
    if attr is None:
        return None
    value = getattr(union, attr)
    if value_type == 0:
        number = float(value)
        if number != number or (number != 0.0 and abs(number) < 1e-300):  # noqa: PLR0124
            return float(getattr(union, "uiVal", 0))
        return number
    return float(value)
