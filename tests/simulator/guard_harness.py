"""Guard-byte harness: every hand-written simulated NVML call, through the C ABI.

Run as a script in a child process whose environment loads the simulator
(``LD_LIBRARY_PATH`` + ``GPU_SIM_DIR``)::

    python guard_harness.py HEADER NATIVE_DIR [--mig]

For every function the simulator implements by hand (the generated NOT_SUPPORTED stubs write
nothing), each pointer argument is a ctypes buffer of exactly the size of the layout the
caller's entry point implies (``sizeof`` from nvml.h, or the legacy layout for the old
unversioned symbols), with 64 canary bytes before and after it. The call goes through the
C ABI; afterwards every canary must be intact. Prints one JSON object on its last line:
``{"calls": [[function, context, return code], ...], "violations": [...], "uncovered": [...]}``.
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_exporter.simulator import FaultInjector, _codegen

GUARD = 64
CANARY = 0xA5
SUCCESS, INSUFFICIENT_SIZE = 0, 7

# Layouts that legacy entry points imply (bytes of their struct argument). The current header
# declares these symbols with today's structs; callers of the old names pass older ones:
# nvmlPciInfo_t before _v3 (busId[16], 5 uints, reserved0..3; py3nvml 0.2.7 still passes it),
# nvmlEventData_t before _v2 (no GI/CI ids), nvmlDeviceAttributes_t before _v2 (six uints),
# nvmlComputeInstanceInfo_t before _v2 (no placement) - as in the R450 nvml.h.
LEGACY = {
    "nvmlDeviceGetPciInfo": 52,
    "nvmlDeviceGetPciInfo_v2": 52,
    "nvmlDeviceGetNvLinkRemotePciInfo": 52,
    "nvmlEventSetWait": 24,
    "nvmlDeviceGetAttributes": 24,
    "nvmlComputeInstanceGetInfo": 24,
}
HANDLE_TYPES = {"nvmlDevice_t", "nvmlGpuInstance_t", "nvmlComputeInstance_t", "nvmlEventSet_t",
                "nvmlGpmSample_t"}
# offsets and sizes the special cases need, evaluated by the C compiler
OFFSETS = {
    "fv.fieldId": "offsetof(nvmlFieldValue_t, fieldId)",
    "fv.scopeId": "offsetof(nvmlFieldValue_t, scopeId)",
    "fv.size": "sizeof(nvmlFieldValue_t)",
    "uuid.type": "offsetof(nvmlUUID_t, type)",
    "uuid.value": "offsetof(nvmlUUID_t, value)",
    "pui.count": "offsetof(nvmlProcessesUtilizationInfo_t, processSamplesCount)",
    "pui.array": "offsetof(nvmlProcessesUtilizationInfo_t, procUtilArray)",
    "pui.elem": "sizeof(nvmlProcessUtilizationInfo_v1_t)",
    "pdl.mode": "offsetof(nvmlProcessDetailList_t, mode)",
    "pdl.count": "offsetof(nvmlProcessDetailList_t, numProcArrayEntries)",
    "pdl.array": "offsetof(nvmlProcessDetailList_t, procArray)",
    "pdl.elem": "sizeof(nvmlProcessDetail_v1_t)",
    "gpm.num": "offsetof(nvmlGpmMetricsGet_t, numMetrics)",
    "gpm.s1": "offsetof(nvmlGpmMetricsGet_t, sample1)",
    "gpm.s2": "offsetof(nvmlGpmMetricsGet_t, sample2)",
    "gpm.metrics": "offsetof(nvmlGpmMetricsGet_t, metrics)",
    "gpm.elem": "sizeof(nvmlGpmMetric_t)",
    "gip.count": "offsetof(nvmlGpuInstanceProfileInfo_t, instanceCount)",
    "gip.id": "offsetof(nvmlGpuInstanceProfileInfo_t, id)",
    "cip.count": "offsetof(nvmlComputeInstanceProfileInfo_t, instanceCount)",
    "gsp.buf": "NVML_GSP_FIRMWARE_VERSION_BUF_SIZE",
}
# Output strings without a length argument: the buffer size nvml.h documents.
STRING_SIZES = {"nvmlDeviceGetGspFirmwareVersion": "gsp.buf"}
SPECIAL_VERSIONS = {"nvmlGpmMetricsGet_t": "NVML_GPM_METRICS_GET_VERSION",
                    "nvmlGpmSupport_t": "NVML_GPM_SUPPORT_VERSION"}


class Buf:
    """``size`` bytes with canary bytes on both sides."""

    def __init__(self, size: int, init: bytes = b"") -> None:
        self.size = size
        self.raw = (ctypes.c_ubyte * (size + 2 * GUARD))()
        ctypes.memset(self.raw, CANARY, size + 2 * GUARD)
        ctypes.memset(ctypes.addressof(self.raw) + GUARD, 0, size)
        if init:
            self.write(0, init)

    @property
    def ptr(self) -> int:
        return ctypes.addressof(self.raw) + GUARD

    def write(self, off: int, data: bytes) -> None:
        assert off + len(data) <= self.size
        ctypes.memmove(self.ptr + off, data, len(data))

    def read(self, off: int, n: int) -> bytes:
        return ctypes.string_at(self.ptr + off, n)

    def u32(self, off: int = 0) -> int:
        return int.from_bytes(self.read(off, 4), "little")

    def u64(self, off: int = 0) -> int:
        return int.from_bytes(self.read(off, 8), "little")

    def intact(self) -> bool:
        raw = bytes(self.raw)
        fence = bytes([CANARY]) * GUARD
        return raw[:GUARD] == fence and raw[GUARD + self.size:] == fence


def u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def u64(v: int) -> bytes:
    return (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")


def c_facts(header: Path, types: set[str], versions: set[str]) -> tuple[dict[str, int], ...]:
    """``sizeof`` of ``types``, values of version macros, OFFSETS - from the C compiler."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "nvml.h"',
             "int main(void) {"]
    lines += [f'printf("T|%s|%zu\\n", "{t}", sizeof({t}));' for t in sorted(types)]
    lines += [f'printf("V|%s|%u\\n", "{v}", (unsigned)({v}));' for v in sorted(versions)]
    lines += [f'printf("O|%s|%zu\\n", "{k}", (size_t)({e}));' for k, e in OFFSETS.items()]
    lines += ["return 0;", "}"]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp, "facts.c"), Path(tmp, "facts")
        src.write_text("\n".join(lines))
        subprocess.run(["cc", "-DNVML_NO_UNVERSIONED_FUNC_DEFS", f"-I{header.parent}",
                        "-o", str(exe), str(src)], check=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    facts: dict[str, dict[str, int]] = {"T": {}, "V": {}, "O": {}}
    for line in out.splitlines():
        kind, name, value = line.split("|")
        facts[kind][name] = int(value)
    return facts["T"], facts["V"], facts["O"]


def version_macro(header_text: str, ctype: str) -> str | None:
    """The ``NVML_STRUCT_VERSION`` macro of a versioned struct type, else None."""
    if ctype in SPECIAL_VERSIONS:
        return SPECIAL_VERSIONS[ctype]
    alias = re.search(rf"typedef\s+(\w+)\s+{re.escape(ctype)}\s*;", header_text)
    resolved = alias.group(1) if alias else ctype
    m = re.fullmatch(r"(\w+)_v(\d+)_t", resolved)
    if not m:
        return None
    macro = f"{m.group(1)}_v{m.group(2)}"
    if re.search(rf"#define\s+{macro}\s+NVML_STRUCT_VERSION", header_text):
        return macro
    return None


def pointee(decl: str) -> str:
    return decl.rsplit("*", 1)[0].replace("const", "").strip()


class Harness:
    """Calls functions with guarded buffers and records what happened."""

    def __init__(self, header: Path, native: Path) -> None:
        self.text = header.read_text()
        funcs = _codegen.parse_header(_codegen.preprocess(header))
        defined = _codegen.defined_in(sorted(native.glob("*.c")))
        self.funcs = [f for f in funcs if f.name in defined]
        types = {pointee(d) for f in self.funcs for d, _ in f.params if "*" in d}
        types.discard("char")
        self.vmacro = {t: version_macro(self.text, t) for t in types}
        self.size, self.version, self.off = c_facts(
            header, types, {v for v in self.vmacro.values() if v})
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self.calls: list[list[Any]] = []
        self.violations: list[str] = []
        self.covered: set[str] = set()

    # -- plumbing
    def fn(self, name: str) -> Any:
        f = getattr(self.lib, name)
        f.restype = ctypes.c_int
        return f

    def call(self, name: str, ctx: str, *args: Any, bufs: tuple[Buf, ...] = ()) -> int:
        ret = int(self.fn(name)(*args))
        self.calls.append([name, ctx, ret])
        self.covered.add(name)
        for i, b in enumerate(bufs):
            if not b.intact():
                self.violations.append(f"{name} [{ctx}]: wrote outside buffer {i} "
                                       f"({b.size} bytes), returned {ret}")
        return ret

    def struct(self, fname: str, ctype: str) -> Buf:
        size = LEGACY.get(fname, self.size[ctype])
        macro = self.vmacro.get(ctype)
        return Buf(size, u32(self.version[macro]) if macro else b"")

    def string(self, name: str, *head: Any) -> str:
        b = Buf(256)
        ret = self.fn(name)(*head, ctypes.c_void_p(b.ptr), ctypes.c_uint(256))
        return b.read(0, 256).split(b"\0")[0].decode() if ret == SUCCESS else ""

    # -- generic rule
    def generic(self, f: _codegen.Function, ctx: str, h: dict[str, Any]) -> None:  # noqa: PLR0912
        args: list[Any] = []
        bufs: list[Buf] = []
        params = list(f.params)
        devices = 0
        for i, (decl, pname) in enumerate(params):
            ctype = decl.rsplit(pname, 1)[0].strip() if "*" not in decl else pointee(decl)
            if "*" not in decl:
                if ctype == "nvmlDevice_t":
                    args.append(ctypes.c_void_p(h["dev"] if devices == 0 else h["dev2"]))
                    devices += 1
                elif ctype in HANDLE_TYPES:
                    key = {"nvmlGpuInstance_t": "gi", "nvmlComputeInstance_t": "ci",
                           "nvmlEventSet_t": "set", "nvmlGpmSample_t": "sample"}[ctype]
                    if h.get(key) is None:
                        return
                    args.append(ctypes.c_void_p(h[key]))
                elif pname == "length" and i > 0 and "char" in params[i - 1][0]:
                    args.append(ctypes.c_uint(bufs[-1].size))
                elif ctype == "unsigned long long":
                    args.append(ctypes.c_ulonglong(0))
                elif ctype == "int":
                    args.append(ctypes.c_int(0))
                else:
                    args.append(ctypes.c_uint(h.get(("value", f.name, pname), 0)))
                continue
            if ctype == "char" and "const" in decl:
                args.append(ctypes.c_char_p(h.get(("text", pname), "").encode()))
                continue
            if ctype == "char":
                has_length = i + 1 < len(params) and params[i + 1][1] == "length"
                if not has_length and f.name not in STRING_SIZES:
                    return  # unknown caller size: left uncovered, the test names it
                b = Buf(h.get("strlen", 96) if has_length else self.off[STRING_SIZES[f.name]])
            elif ctype == "nvmlUUID_t":
                b = self.struct(f.name, ctype)
                b.write(self.off["uuid.type"], u32(1))
                b.write(self.off["uuid.value"], h[("text", "uuid")].encode()[:40])
            else:
                b = self.struct(f.name, ctype)
            bufs.append(b)
            args.append(ctypes.c_void_p(b.ptr))
        self.call(f.name, ctx, *args, bufs=tuple(bufs))

    # -- count/array protocols
    def counted(self, name: str, ctx: str, head: list[Any], elem: int, *, count_first: bool,
                arrays: int = 1, capacity: int | None = None, tail: tuple[Any, ...] = ()) -> None:
        """Size query, then exactly ``n`` elements (or the caller's documented capacity)."""
        cnt = Buf(4)
        if capacity is None:
            nulls = [ctypes.c_void_p(None)] * arrays
            args = [*head, ctypes.c_void_p(cnt.ptr), *nulls] if count_first else \
                [*head, *nulls, ctypes.c_void_p(cnt.ptr)]
            ret = self.call(name, ctx + " size-query", *args, *tail, bufs=(cnt,))
            if ret not in (SUCCESS, INSUFFICIENT_SIZE):
                return
            n = cnt.u32()
        else:
            n = capacity
        cnt = Buf(4, u32(n))
        arrs = [Buf(elem * n) for _ in range(arrays)]
        ptrs = [ctypes.c_void_p(a.ptr) for a in arrs]
        args = [*head, ctypes.c_void_p(cnt.ptr), *ptrs] if count_first else \
            [*head, *ptrs, ctypes.c_void_p(cnt.ptr)]
        self.call(name, ctx + f" n={n}", *args, *tail, bufs=(cnt, *arrs))

    def special(self, name: str, ctx: str, h: dict[str, Any]) -> bool:  # noqa: PLR0912, PLR0915
        dev = ctypes.c_void_p(h["dev"])
        if re.fullmatch(r"nvmlDevice(Get)?(Compute|Graphics|MPSCompute)RunningProcesses(_v\d)?",
                        name):
            ctype = {"": "nvmlProcessInfo_v1_t", "_v2": "nvmlProcessInfo_v2_t",
                     "_v3": "nvmlProcessInfo_t"}[re.sub(r".*?(_v\d)?$", r"\1", name)]
            self.counted(name, ctx, [dev], self.size[ctype], count_first=True)
        elif name == "nvmlDeviceGetProcessUtilization":
            self.counted(name, ctx, [dev], self.size["nvmlProcessUtilizationSample_t"],
                         count_first=False, tail=(ctypes.c_ulonglong(0),))
        elif name in ("nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPages_v2"):
            for cause in (0, 1):
                self.counted(name, f"{ctx} cause={cause}", [dev, ctypes.c_uint(cause)], 8,
                             count_first=True, arrays=1 if name.endswith("Pages") else 2)
        elif name in ("nvmlDeviceGetFieldValues", "nvmlDeviceClearFieldValues"):
            ids = [1, 83, 90, 91, 138, 150, 155, 190, 1000]
            size = self.off["fv.size"]
            b = Buf(size * len(ids))
            for k, fid in enumerate(ids):
                b.write(k * size + self.off["fv.fieldId"], u32(fid))
            self.call(name, ctx, dev, ctypes.c_int(len(ids)), ctypes.c_void_p(b.ptr), bufs=(b,))
        elif name in ("nvmlDeviceGetCpuAffinity", "nvmlDeviceGetCpuAffinityWithinScope",
                      "nvmlDeviceGetMemoryAffinity"):
            for words in (1, 2):
                b = Buf(8 * words)
                extra = () if name == "nvmlDeviceGetCpuAffinity" else (ctypes.c_uint(0),)
                self.call(name, f"{ctx} words={words}", dev, ctypes.c_uint(words),
                          ctypes.c_void_p(b.ptr), *extra, bufs=(b,))
        elif name == "nvmlDeviceGetSupportedMemoryClocks":
            self.counted(name, ctx, [dev], 4, count_first=True)
        elif name == "nvmlDeviceGetSupportedGraphicsClocks":
            for mem in self.mem_clocks(dev):
                self.counted(name, f"{ctx} mem={mem}", [dev, ctypes.c_uint(mem)], 4,
                             count_first=True)
        elif name == "nvmlDeviceGetGpuInstancePossiblePlacements_v2":
            for pid in self.gi_profile_ids(dev):
                self.counted(name, f"{ctx} profile={pid}", [dev, ctypes.c_uint(pid)], 8,
                             count_first=False)
        elif name == "nvmlDeviceGetGpuInstanceRemainingCapacity":
            for pid in self.gi_profile_ids(dev):
                cnt = Buf(4)
                self.call(name, f"{ctx} profile={pid}", dev, ctypes.c_uint(pid),
                          ctypes.c_void_p(cnt.ptr), bufs=(cnt,))
        elif name == "nvmlDeviceGetProcessesUtilizationInfo":
            self.versioned_array(name, ctx, dev, "nvmlProcessesUtilizationInfo_t", key="pui")
        elif name == "nvmlDeviceGetRunningProcessDetailList":
            for mode in (0, 1, 2):
                self.versioned_array(name, f"{ctx} mode={mode}", dev, "nvmlProcessDetailList_t",
                                     key="pdl", mode=mode)
        elif name == "nvmlDeviceGetGpuInstances":
            for const in range(h.get("gip_count", 0)):
                info = Buf(self.size["nvmlGpuInstanceProfileInfo_t"])
                if self.fn("nvmlDeviceGetGpuInstanceProfileInfo")(
                        dev, ctypes.c_uint(const), ctypes.c_void_p(info.ptr)) != SUCCESS:
                    continue
                pid = info.u32(self.off["gip.id"])
                self.counted(name, f"{ctx} profile={pid}", [dev, ctypes.c_uint(pid)], 8,
                             count_first=False, capacity=info.u32(self.off["gip.count"]))
        elif name == "nvmlGpuInstanceGetComputeInstances":
            if h.get("gi") is None:
                return True
            gi = ctypes.c_void_p(h["gi"])
            for const in range(8):
                info = Buf(self.size["nvmlComputeInstanceProfileInfo_t"])
                if self.fn("nvmlGpuInstanceGetComputeInstanceProfileInfo")(
                        gi, ctypes.c_uint(const), ctypes.c_uint(0),
                        ctypes.c_void_p(info.ptr)) != SUCCESS:
                    continue
                self.counted(name, f"{ctx} profile={const}", [gi, ctypes.c_uint(const)], 8,
                             count_first=False, capacity=info.u32(self.off["cip.count"]))
        elif name in ("nvmlEventSetWait", "nvmlEventSetWait_v2"):
            self.event_wait(name, ctx, h)
        elif name == "nvmlGpmMetricsGet":
            self.gpm_metrics(ctx, h)
        elif name == "nvmlErrorString":
            f = self.lib.nvmlErrorString
            f.restype = ctypes.c_char_p
            texts = [f(ctypes.c_int(code)) for code in (0, 3, 25, 999, 12345)]
            self.calls.append([name, ctx, 0 if all(texts) else -1])
            self.covered.add(name)
        elif name not in ("nvmlShutdown", "nvmlEventSetFree", "nvmlGpmSampleFree"):
            return False  # (those three are called once, at the end)
        return True

    def mem_clocks(self, dev: Any) -> list[int]:
        cnt = Buf(4, u32(8))
        arr = Buf(4 * 8)
        if self.fn("nvmlDeviceGetSupportedMemoryClocks")(
                dev, ctypes.c_void_p(cnt.ptr), ctypes.c_void_p(arr.ptr)) != SUCCESS:
            return [0]
        return [arr.u32(4 * k) for k in range(cnt.u32())] + [1]

    def gi_profile_ids(self, dev: Any) -> list[int]:
        ids = []
        for const in range(12):
            info = Buf(self.size["nvmlGpuInstanceProfileInfo_t"])
            if self.fn("nvmlDeviceGetGpuInstanceProfileInfo")(
                    dev, ctypes.c_uint(const), ctypes.c_void_p(info.ptr)) == SUCCESS:
                ids.append(info.u32(self.off["gip.id"]))
        return ids or [0]

    def versioned_array(self, name: str, ctx: str, dev: Any, ctype: str, *, key: str,
                        mode: int | None = None) -> None:
        head = self.struct(name, ctype)
        if mode is not None:
            head.write(self.off[f"{key}.mode"], u32(mode))
        ret = self.call(name, ctx + " size-query", dev, ctypes.c_void_p(head.ptr), bufs=(head,))
        if ret != INSUFFICIENT_SIZE:
            return
        n = head.u32(self.off[f"{key}.count"])
        arr = Buf(self.off[f"{key}.elem"] * n)
        head.write(self.off[f"{key}.array"], u64(arr.ptr))
        self.call(name, f"{ctx} n={n}", dev, ctypes.c_void_p(head.ptr), bufs=(head, arr))

    def event_wait(self, name: str, ctx: str, h: dict[str, Any]) -> None:
        setp = Buf(8)
        if self.call("nvmlEventSetCreate", ctx, ctypes.c_void_p(setp.ptr), bufs=(setp,)):
            return
        evset = ctypes.c_void_p(setp.u64())
        if self.fn("nvmlDeviceRegisterEvents")(ctypes.c_void_p(h["whole"]),
                                               ctypes.c_ulonglong(0x8), evset) != SUCCESS:
            return
        FaultInjector(Path(h["state"])).xid(h["gpu"], 79)
        data = self.struct(name, "nvmlEventData_t")
        self.call(name, ctx, evset, ctypes.c_void_p(data.ptr), ctypes.c_uint(10000),
                  bufs=(data,))
        empty = self.struct(name, "nvmlEventData_t")
        self.call(name, ctx + " timeout", evset, ctypes.c_void_p(empty.ptr), ctypes.c_uint(0),
                  bufs=(empty,))
        self.fn("nvmlEventSetFree")(evset)

    def gpm_metrics(self, ctx: str, h: dict[str, Any]) -> None:
        samples = []
        for _ in range(2):
            s = Buf(8)
            if self.fn("nvmlGpmSampleAlloc")(ctypes.c_void_p(s.ptr)) != SUCCESS:
                return
            samples.append(s.u64())
            self.fn("nvmlGpmSampleGet")(ctypes.c_void_p(h["whole"]), ctypes.c_void_p(s.u64()))
        b = self.struct("nvmlGpmMetricsGet", "nvmlGpmMetricsGet_t")
        ids = [1, 2, 5, 10, 20, 60, 61, 62]
        b.write(self.off["gpm.num"], u32(len(ids)))
        b.write(self.off["gpm.s1"], u64(samples[0]))
        b.write(self.off["gpm.s2"], u64(samples[1]))
        for k, mid in enumerate(ids):
            b.write(self.off["gpm.metrics"] + k * self.off["gpm.elem"], u32(mid))
        self.call("nvmlGpmMetricsGet", ctx, ctypes.c_void_p(b.ptr), bufs=(b,))
        for s in samples:
            self.call("nvmlGpmSampleFree", ctx, ctypes.c_void_p(s))

    # -- contexts
    def handle(self, index: int) -> ctypes.c_void_p:
        hb = Buf(8)
        assert self.fn("nvmlDeviceGetHandleByIndex_v2")(
            ctypes.c_uint(index), ctypes.c_void_p(hb.ptr)) == SUCCESS
        return ctypes.c_void_p(hb.u64())

    def context(self, whole: int, dev: int, mig: int, gpu: int, state: str) -> dict[str, Any]:
        h: dict[str, Any] = {"dev": dev, "dev2": whole, "whole": whole, "gpu": gpu,
                             "state": state}
        devp = ctypes.c_void_p(dev)
        for pname, fname in (("uuid", "nvmlDeviceGetUUID"), ("serial", "nvmlDeviceGetSerial"),
                             ("pciBusId", None)):
            if fname:
                h[("text", pname)] = self.string(fname, devp)
        pci = Buf(self.size["nvmlPciInfo_t"])
        wholep = ctypes.c_void_p(whole)
        if self.fn("nvmlDeviceGetPciInfo_v3")(wholep, ctypes.c_void_p(pci.ptr)) == 0:
            h[("text", "pciBusId")] = pci.read(36, 32).split(b"\0")[0].decode()
        h["gip_count"] = 8
        s = Buf(8)
        if self.fn("nvmlGpmSampleAlloc")(ctypes.c_void_p(s.ptr)) == SUCCESS:
            h["sample"] = s.u64()
        e = Buf(8)
        if self.fn("nvmlEventSetCreate")(ctypes.c_void_p(e.ptr)) == SUCCESS:
            h["set"] = e.u64()
        gi, ci = Buf(8), Buf(8)
        # the first MIG device's GPU/compute instance (GetGpuInstanceById on the parent)
        gid, cid, migp = Buf(4), Buf(4), ctypes.c_void_p(mig)
        if (mig
                and self.fn("nvmlDeviceGetGpuInstanceId")(migp, ctypes.c_void_p(gid.ptr)) == 0
                and self.fn("nvmlDeviceGetComputeInstanceId")(migp, ctypes.c_void_p(cid.ptr)) == 0
                and self.fn("nvmlDeviceGetGpuInstanceById")(
                    wholep, ctypes.c_uint(gid.u32()), ctypes.c_void_p(gi.ptr)) == 0
                and self.fn("nvmlGpuInstanceGetComputeInstanceById")(
                    ctypes.c_void_p(gi.u64()), ctypes.c_uint(cid.u32()),
                    ctypes.c_void_p(ci.ptr)) == 0):
            h["gi"], h["ci"] = gi.u64(), ci.u64()
            h[("value", "nvmlDeviceGetGpuInstanceById", "id")] = gid.u32()
            h[("value", "nvmlGpuInstanceGetComputeInstanceById", "id")] = cid.u32()
            h[("value", "nvmlGpmMigSampleGet", "gpuInstanceId")] = gid.u32()
        return h

    def run_context(self, ctx: str, h: dict[str, Any]) -> None:
        for f in self.funcs:
            if self.special(f.name, ctx, h):
                continue
            self.generic(f, ctx, h)
            if any(pn == "length" for _, pn in f.params):
                self.generic(f, ctx + " short", {**h, "strlen": 1})
        for link in (1, 17, 35):  # link-indexed calls beyond link 0
            for f in self.funcs:
                if any(pn == "link" for _, pn in f.params):
                    self.generic(f, f"{ctx} link={link}",
                                 {**h, **{("value", f.name, "link"): link}})


def main(argv: list[str]) -> int:
    header, native = Path(argv[1]), Path(argv[2])
    state = argv[3]
    hn = Harness(header, native)
    assert hn.fn("nvmlInitWithFlags")(ctypes.c_uint(0)) == SUCCESS
    count = Buf(4)
    hn.call("nvmlDeviceGetCount_v2", "setup", ctypes.c_void_p(count.ptr), bufs=(count,))
    last = count.u32() - 1
    if last > 0 and json.loads(Path(state, "profile.json").read_text())["mig_tables"][last]:
        # MIG on the last GPU (H100 too: GPM on a MIG device), whole-GPU paths on GPU 0
        FaultInjector(Path(state)).mig_reconfigure(last, ["1g.10gb"])
        mig = Buf(8)
        deadline = time.monotonic() + 30
        while hn.fn("nvmlDeviceGetMigDeviceHandleByIndex")(
                hn.handle(last), ctypes.c_uint(0), ctypes.c_void_p(mig.ptr)) != SUCCESS:
            assert time.monotonic() < deadline, "MIG reconfiguration not seen"
            time.sleep(0.05)
    contexts: list[tuple[str, int, int, int, int]] = []
    for gpu in sorted({0, last}):
        whole = hn.handle(gpu).value
        mig = Buf(8)
        has_mig = hn.fn("nvmlDeviceGetMigDeviceHandleByIndex")(
            ctypes.c_void_p(whole), ctypes.c_uint(0), ctypes.c_void_p(mig.ptr)) == SUCCESS
        contexts.append((f"gpu{gpu}", whole, whole, mig.u64() if has_mig else 0, gpu))
        if has_mig:
            contexts.append((f"gpu{gpu}/mig0", whole, mig.u64(), mig.u64(), gpu))
    for ctx, whole, dev, mig0, gpu in contexts:
        hn.run_context(ctx, hn.context(whole, dev, mig0, gpu, state))
    for name in ("nvmlEventSetFree", "nvmlGpmSampleFree"):
        hn.covered.add(name)  # exercised inside event_wait / gpm_metrics
    hn.call("nvmlShutdown", "teardown")
    uncovered = sorted({f.name for f in hn.funcs} - hn.covered)
    loaded = [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
              if line.endswith("/libnvidia-ml.so.1")]
    print(json.dumps({"calls": hn.calls, "violations": hn.violations, "uncovered": uncovered,
                      "loaded": loaded[0] if loaded else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
