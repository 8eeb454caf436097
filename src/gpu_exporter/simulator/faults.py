"""Runtime fault injection and call counters for a simulator state directory.

The injector keeps its state in ``faults.json`` and renders ``faults`` (the line-based file
the C library re-reads within ~100 ms of a change) atomically through a rename, under an
advisory lock so that concurrent injectors do not lose updates. Call counters are read from
``calls.bin``, a file the library maps shared and increments atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpu_exporter.simulator.profiles import SimulatorError, place_mig
from gpu_exporter.simulator.symbols import closest, nvml_functions

NO_INSTANCE = 0xFFFFFFFF
_MAX_XIDS = 200
PROCESS_KINDS = ("compute", "graphics", "mps")
MAX_PROCESS_RECORDS = 1024   # = SIM_MAX_SPROCS in sim.h: live and ended, in all
MAX_GPU_PROCESSES = 64       # = SIM_MAX_GPU_SPROCS: running on one GPU
_FN_NAME = re.compile(r"^(nvml\w+|\*)$")


class FaultInjector:
    """Inject faults into every process that uses the simulator state directory ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)

    # ------------------------------------------------------------------ public API

    def lose_gpu(self, index: int) -> None:
        """Make every call on GPU ``index`` (and its MIG devices) return GPU_IS_LOST."""
        self._check_index(index)
        self._update(lambda s: s["lost"].append(index) if index not in s["lost"] else None)

    def restore_gpu(self, index: int) -> None:
        """Undo :meth:`lose_gpu`."""
        self._check_index(index)
        self._update(lambda s: s.update(lost=[i for i in s["lost"] if i != index]))

    def xid(self, index: int, code: int, *, gi_id: int | None = None,
            ci_id: int | None = None) -> None:
        """Deliver XID ``code`` on GPU ``index`` once through ``nvmlEventSetWait``."""
        self._check_index(index)
        if not 0 <= code < 2**32:
            raise SimulatorError(f"xid: code must be a non-negative integer, got {code}")

        def change(s: dict[str, Any]) -> None:
            s["next_seq"] += 1
            s["xid"].append([index, code, NO_INSTANCE if gi_id is None else gi_id,
                             NO_INSTANCE if ci_id is None else ci_id, s["next_seq"]])
            del s["xid"][:-_MAX_XIDS]

        self._update(change)

    def ecc(self, index: int, *, sbe: int = 0, dbe: int = 0) -> None:
        """Add ``sbe`` corrected and ``dbe`` uncorrected ECC errors to GPU ``index``."""
        self._check_index(index)
        if sbe < 0 or dbe < 0:
            raise SimulatorError("ecc: sbe and dbe must be >= 0")

        def change(s: dict[str, Any]) -> None:
            cur = s["ecc"].get(str(index), [0, 0])
            s["ecc"][str(index)] = [cur[0] + sbe, cur[1] + dbe]

        self._update(change)

    def unsupported(self, index: int | None, name: str) -> None:
        """Turn an NVML function (``nvmlDeviceGetPowerUsage``) or ``field:<id>`` NOT_SUPPORTED.

        ``index`` None applies to every device.
        """
        if index is not None:
            self._check_index(index)
        self._check_target("unsupported", name)
        entry = [-1 if index is None else index, name]
        self._update(lambda s: s["unsupported"].append(entry)
                     if entry not in s["unsupported"] else None)

    def error(self, index: int | None, name: str, code: int) -> None:
        """Make an NVML function, or one entry ``field:<id>`` of field values, fail with ``code``.

        ``code`` is any non-zero NVML return code (999 UNKNOWN, 4 NO_PERMISSION, 14
        CORRUPTED_INFOROM, ...); ``index`` None applies to every device and to the calls that
        take no device. A lost GPU still answers GPU_IS_LOST first.
        """
        if index is not None:
            self._check_index(index)
        if isinstance(code, bool) or not isinstance(code, int) or not 0 < code < 2**32:
            raise SimulatorError(f"error: code must be a non-zero NVML return code, got {code!r}")
        self._check_target("error", name)
        entry = [-1 if index is None else index, name, code]
        self._update(lambda s: s["errors"].append(entry) if entry not in s["errors"] else None)

    def latency(self, function: str, seconds: float, *, index: int | None = None) -> None:
        """Make ``function`` (``*`` = every function) sleep ``seconds`` before answering."""
        self._delay(function, float(seconds), hang=False, index=index)

    def hang(self, function: str, *, index: int | None = None) -> None:
        """Make ``function`` block until the fault is cleared."""
        self._delay(function, 0.0, hang=True, index=index)

    def mig_reconfigure(self, index: int, profiles: list[str]) -> None:
        """Replace the MIG layout of GPU ``index`` (``[]`` turns MIG mode off)."""
        self._check_index(index)
        table = self._profile()["mig_tables"][index]
        if table is None:
            raise SimulatorError(f"mig: GPU {index} is not MIG-capable in this profile")
        try:
            place_mig(table, profiles)
        except ValueError as exc:
            raise SimulatorError(f"mig: GPU {index}: {exc}") from None
        self._update(lambda s: s["mig"].__setitem__(str(index), [table, list(profiles)]))

    def clear(self) -> None:
        """Remove every fault (XIDs not yet delivered are dropped); scripted processes stay."""

        def change(s: dict[str, Any]) -> None:
            keep = {"next_seq": s["next_seq"], "procs": s["procs"], "scripted": s["scripted"]}
            s.clear()
            s.update(_empty(), **keep)

        self._update(change)

    # ------------------------------------------------------------------ scripted processes

    def add_process(self, pid: int, gpu: int, *, kind: str = "compute",
                    instance: int | None = None, mem_mib: int = 0, sm: int = 0, mem: int = 0,
                    enc: int = 0, dec: int = 0) -> None:
        """Start process ``pid`` on GPU ``gpu`` (MIG: in GPU instance ``instance``).

        ``kind`` is ``compute``, ``graphics`` or ``mps`` (an MPS client: listed by the MPS
        call, the compute list then shows the MPS server). ``mem_mib`` is its GPU memory;
        ``sm``, ``mem``, ``enc``, ``dec`` its utilisation in percent, constant while it runs.
        From the first process added to a GPU its seeded processes are gone for good: the
        GPU's lists, memory used, utilisation, power and energy follow the scripted ones. A
        PID already running on that GPU is replaced (it exits and a new process with the same
        PID starts: PID reuse).
        """
        self._check_index(gpu)
        if kind not in PROCESS_KINDS:
            raise SimulatorError(f"process: kind must be one of {', '.join(PROCESS_KINDS)}, "
                                 f"got {kind!r}")
        _check_int("pid", pid, 1, 2**32 - 1)
        if instance is not None:
            _check_int("instance", instance, 0, 14)
            if self._profile()["mig_tables"][gpu] is None:
                raise SimulatorError(f"process: GPU {gpu} is not MIG-capable in this profile; "
                                     "give no instance")
        _check_int("mem_mib", mem_mib, 0, 2**40)
        for name, value in (("sm", sm), ("mem", mem), ("enc", enc), ("dec", dec)):
            _check_int(name, value, 0, 100)

        def change(s: dict[str, Any]) -> None:
            now = _now_us()
            live = [r for r in s["procs"] if r["end_us"] == 0]
            for r in live:
                if r["pid"] == pid and r["gpu"] == gpu:
                    r["end_us"] = now
            if sum(1 for r in live if r["gpu"] == gpu and r["end_us"] == 0) >= MAX_GPU_PROCESSES:
                raise SimulatorError(f"process: at most {MAX_GPU_PROCESSES} processes run on "
                                     f"one GPU (GPU {gpu})")
            if len(s["procs"]) >= MAX_PROCESS_RECORDS:
                raise SimulatorError(f"process: {MAX_PROCESS_RECORDS} processes were started in "
                                     "this state directory (the exact energy integral keeps "
                                     "every one); prepare a new state directory")
            s["scripted"].setdefault(str(gpu), now)
            s["procs"].append({"pid": pid, "gpu": gpu, "kind": kind, "instance": instance,
                               "mem_mib": mem_mib, "sm": sm, "mem": mem, "enc": enc,
                               "dec": dec, "start_us": max(now, 1), "end_us": 0})

        self._update(change)

    def remove_process(self, pid: int) -> None:
        """End process ``pid`` (on every GPU it runs on)."""
        _check_int("pid", pid, 1, 2**32 - 1)

        def change(s: dict[str, Any]) -> None:
            live = [r for r in s["procs"] if r["pid"] == pid and r["end_us"] == 0]
            if not live:
                raise SimulatorError(f"process: no running process with PID {pid}")
            now = _now_us()
            for r in live:
                r["end_us"] = max(now, r["start_us"] + 1)

        self._update(change)

    def clear_processes(self, gpu: int | None = None) -> None:
        """End every scripted process (on GPU ``gpu`` only when given).

        The GPUs stay scripted (no seeded processes come back, so their counters stay
        monotonic): they are idle until processes are added again.
        """
        if gpu is not None:
            self._check_index(gpu)

        def change(s: dict[str, Any]) -> None:
            now = _now_us()
            for r in s["procs"]:
                if r["end_us"] == 0 and (gpu is None or r["gpu"] == gpu):
                    r["end_us"] = max(now, r["start_us"] + 1)

        self._update(change)

    def processes(self) -> list[dict[str, Any]]:
        """The running scripted processes, oldest first.

        Each: ``pid``, ``gpu``, ``kind``, ``instance``, ``mem_mib``, ``sm``, ``mem``, ``enc``,
        ``dec``, ``start_us`` (wall-clock microseconds).
        """
        state = self._read()
        return [{k: v for k, v in r.items() if k != "end_us"}
                for r in state["procs"] if r["end_us"] == 0]

    def call_counts(self) -> dict[str, int]:
        """Calls per NVML function made so far by the processes using this state dir.

        Only functions called at least once are listed.
        """
        names_path = self.state_dir / "calls.names"
        data_path = self.state_dir / "calls.bin"
        try:
            names = names_path.read_text().split()
            data = data_path.read_bytes()
        except FileNotFoundError:
            return {}
        if len(data) < 16 or data[:8] != b"GSIMCNT1":
            return {}
        (n,) = struct.unpack_from("<I", data, 8)
        counts = struct.unpack_from(f"<{n}Q", data, 16)
        return {name: c for name, c in zip(names, counts, strict=False) if c}

    # ------------------------------------------------------------------ internals

    def _delay(self, function: str, seconds: float, *, hang: bool, index: int | None) -> None:
        if not _FN_NAME.match(function):
            raise SimulatorError(f"latency: {function!r} is not an NVML function name (or '*')")
        if function != "*":
            _check_function("hang" if hang else "latency", function)
        if seconds < 0:
            raise SimulatorError("latency: seconds must be >= 0")
        if index is not None:
            self._check_index(index)
        entry = [-1 if index is None else index, function, seconds, hang]
        self._update(lambda s: s["delays"].append(entry))

    @staticmethod
    def _check_target(kind: str, name: str) -> None:
        if name.startswith("field:"):
            if not name[6:].isdigit() or int(name[6:]) >= 512:
                raise SimulatorError(f"{kind}: bad field {name!r} (expected field:<0-511>)")
        elif not _FN_NAME.match(name) or name == "*":
            raise SimulatorError(f"{kind}: {name!r} is neither an NVML function name "
                                 "nor field:<id>")
        else:
            _check_function(kind, name)

    def _profile(self) -> dict[str, Any]:
        path = self.state_dir / "profile.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise SimulatorError(f"{self.state_dir}: not a simulator state directory "
                                 "(no profile.json; create one with `gpu-sim env`)") from None
        return data

    def _check_index(self, index: int) -> None:
        count = int(self._profile()["device_count"])
        if not isinstance(index, int) or not 0 <= index < count:
            raise SimulatorError(f"GPU index {index!r} is outside 0..{count - 1}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.state_dir / "faults.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            return {**_empty(), **json.loads((self.state_dir / "faults.json").read_text())}
        except FileNotFoundError:
            return _empty()

    def _update(self, change: Callable[[dict[str, Any]], object]) -> None:
        self._profile()
        with self._locked():
            state = self._read()
            change(state)
            path = self.state_dir / "faults.json"
            _atomic_write(path, json.dumps(state, indent=1))
            _atomic_write(self.state_dir / "faults", render_faults(state))


def _check_function(kind: str, name: str) -> None:
    """Refuse a function the simulated library does not export, naming the closest ones."""
    library = Path(__file__).resolve().parent / "lib" / "libnvidia-ml.so.1"
    try:
        known = nvml_functions(library)
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"{kind}: cannot read the simulated library's symbols to check "
                             f"{name!r}: {exc}") from None
    if name not in known:
        near = closest(name, known)
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise SimulatorError(f"{kind}: {name!r} is not an NVML function the library "
                             f"exports{hint}")


def _empty() -> dict[str, Any]:
    return {"lost": [], "xid": [], "next_seq": 0, "ecc": {}, "unsupported": [], "delays": [],
            "mig": {}, "errors": [], "procs": [], "scripted": {}}


def _now_us() -> int:
    return time.time_ns() // 1000


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SimulatorError(f"process: {name} must be an integer in {low}..{high}, "
                             f"got {value!r}")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def render_faults(state: dict[str, Any]) -> str:
    """Render the injector state as the C library's ``faults`` file (pure)."""
    out = [f"lost {i}" for i in state["lost"]]
    out += [f"ecc {i} {v[0]} {v[1]}" for i, v in state["ecc"].items()]
    out += [f"unsupported {i} {name}" for i, name in state["unsupported"]]
    out += [f"error {i} {code} {name}" for i, name, code in state["errors"]]
    for i, fn, seconds, hang in state["delays"]:
        out.append(f"hang {i} {fn}" if hang else f"latency {i} {fn} {seconds}")
    out += [f"xid {i} {code} {gi} {ci} {seq}" for i, code, gi, ci, seq in state["xid"]]
    for i, (table, names) in state["mig"].items():
        out.append(f"mig {i} {1 if names else 0}")
        out += [f"migdev {i} {m.render()}" for m in place_mig(table, names)]
    out += [f"scripted {i} {t0}" for i, t0 in state["scripted"].items()]
    for r in state["procs"]:
        gi = -1 if r["instance"] is None else r["instance"]
        out.append(f"proc {r['gpu']} {r['pid']} {PROCESS_KINDS.index(r['kind'])} {gi} "
                   f"{r['mem_mib'] << 20} {r['sm']} {r['mem']} {r['enc']} {r['dec']} "
                   f"{r['start_us']} {r['end_us']}")
    return "\n".join(out) + "\n"
