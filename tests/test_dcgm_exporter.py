"""End to end: the real ``gpu-exporter`` with a DCGM host engine, on the simulated NVML.

The engine is the simulator's stub ``libdcgm.so.4`` (built by the install next to the
simulated NVML, loaded by ``--simulate`` when ``-r``/``--dcgm-local`` asks for DCGM) talking
to a real listening socket on 127.0.0.1 or a unix socket (:class:`Engine`): the stub opens a
real connection to it and reads a closed peer as a lost engine. The stub derives its values
from the same simulated NVML as the exporter (docs/simulator.md, "Stub DCGM"), so with frozen
simulated time the merged ``DCGM_FI_PROF_*`` values must equal what the NVML series of the same
scrape imply. Its behaviour (blanks, statuses, profiling not supported, module not loaded,
multi-pass) is steered through its control file (``GPU_SIM_DCGM_CONFIG``, :class:`DcgmControl`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.exporter import Exporter, run_exporter

from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.dcgm import DcgmControl, Entity

FROZEN = {"GPU_SIM_FROZEN_TIME": "1000"}
PROF = {
    1001: "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    1002: "DCGM_FI_PROF_SM_ACTIVE",
    1003: "DCGM_FI_PROF_SM_OCCUPANCY",
    1004: "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    1005: "DCGM_FI_PROF_DRAM_ACTIVE",
    1006: "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
    1007: "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
    1008: "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
    1009: "DCGM_FI_PROF_PCIE_TX_BYTES",
    1010: "DCGM_FI_PROF_PCIE_RX_BYTES",
}
"""The profiling rows of the default counters file."""
# the stub's documented factors of GR_ENGINE_ACTIVE (docs/simulator.md)
FACTORS = {1002: 0.92, 1003: 0.45, 1004: 0.30, 1006: 0.02, 1007: 0.55, 1008: 0.25}
INSTANCE_FIELDS = (1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008)
GPU_FIELDS = (1009, 1010)
DCGM_REASONS = {
    "dcgm_down", "dcgm_no_library", "dcgm_slow", "dcgm_no_gpu", "profiling_not_supported",
    "profiling_module_not_loaded", "profiling_library_error", "profiling_multi_pass",
    "not_permissioned", "not_found", "not_supported", "blank", "paused", "error",
}


class Engine:
    """A stand-in for nv-hostengine: a listening socket that accepts and holds connections.

    ``close()`` closes the listener and every accepted connection (a lost engine); ``open()``
    listens again on the same address.
    """

    def __init__(self, unix_path: Path | None = None) -> None:
        self.unix_path = unix_path
        self.port = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.open()

    @property
    def address(self) -> str:
        """The ``-r`` value that reaches this engine."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        return f"127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._conns)

    def open(self) -> None:
        if self.unix_path is not None:
            self.unix_path.unlink(missing_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self.unix_path))
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            self.port = listener.getsockname()[1]
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if self._thread is not None:
            self._thread.join(5)
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        if self.unix_path is not None:
            self.unix_path.unlink(missing_ok=True)


@pytest.fixture
def engine() -> Iterator[Engine]:
    server = Engine()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------- scrape helpers

Series = dict[tuple[tuple[str, str], ...], float]


def _families(text: str) -> dict[str, Series]:
    """name -> {sorted label items: value} of every sample."""
    out: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _by(series: Series, *keys: str) -> dict[tuple[str | None, ...], float]:
    """The series keyed by the values of ``keys`` (None where a label is absent)."""
    out = {}
    for labels, value in series.items():
        names = dict(labels)
        key = tuple(names.get(k) for k in keys)
        assert key not in out, f"two series for {key}"
        out[key] = value
    return out


def _reasons(text: str) -> dict[tuple[str | None, str | None, str], str]:
    """(gpu, GPU_I_ID, field) -> reason of each unavailable field (gpu_exporter_field_supported)."""
    rows = _families(text).get("gpu_exporter_field_supported", {})
    out = {}
    for labels, value in rows.items():
        names = dict(labels)
        if value == 0:
            out[(names.get("gpu"), names.get("GPU_I_ID"), names["field"])] = names["reason"]
    return out


def _poll(exporter: Exporter, ok: Callable[[str], bool], what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        status, body, _ = exporter.get("/metrics", timeout=10)
        text = body.decode()
        if status == 200 and ok(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout}s:\n{text[-3000:]}\n{exporter.log}")


def _collections(text: str) -> float:
    return sum(_families(text)["gpu_exporter_collections_total"].values())


def _label_sets(series: Series) -> set[tuple[tuple[str, str], ...]]:
    return set(series)


def _complete(fields: dict[int, str], gpus: int) -> Callable[[str], bool]:
    """True once every family has ``gpus`` GPUs' worth of series or a reason for each."""
    def ok(text: str) -> bool:
        fams = _families(text)
        return "gpu_exporter_dcgm_up" in fams and all(
            len({dict(k)["gpu"] for k in fams.get(name, {})}) == gpus for name in fields.values())
    return ok


def _exporter_args(profile: str, address: str, *extra: str) -> list[str]:
    return ["--simulate", profile, "-c", "500", "-r", address, *extra]


# ---------------------------------------------------------------------------- merged output


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_t4_profiling_fields_come_from_the_engine_consistent_with_nvml(
    tmp_path: Path, transport: str,
) -> None:
    server = Engine(tmp_path / "dcgm.sock" if transport == "unix" else None)
    try:
        env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN}
        with run_exporter(_exporter_args("t4x4", server.address), env=env) as exporter:
            text = _poll(exporter, _complete(PROF, 4), "the profiling families of 4 GPUs")
            log = exporter.log
        assert server.accepted >= 1  # the stub really connected to our socket
    finally:
        server.close()
    fams = _families(text)
    assert fams["gpu_exporter_dcgm_up"] == {(): 1.0}
    util = fams["DCGM_FI_DEV_GPU_UTIL"]
    mem_util = _by(fams["DCGM_FI_DEV_MEM_COPY_UTIL"], "gpu")
    for name in PROF.values():
        # same names and the very labels of the NVML series (gpu, UUID, device, ...)
        assert _label_sets(fams[name]) == _label_sets(util), name
    gr = _by(fams[PROF[1001]], "gpu")
    for (gpu,), value in _by(util, "gpu").items():
        assert gr[(gpu,)] == pytest.approx(value / 100)
        assert _by(fams[PROF[1005]], "gpu")[(gpu,)] == pytest.approx(mem_util[(gpu,)] / 100)
        for fid, factor in FACTORS.items():
            assert _by(fams[PROF[fid]], "gpu")[(gpu,)] == pytest.approx(value / 100 * factor)
        for fid in GPU_FIELDS:  # bytes per second, integers
            rate = _by(fams[PROF[fid]], "gpu")[(gpu,)]
            assert rate >= 0
            assert rate == int(rate)
    assert any(v > 0 for v in gr.values())
    # nothing of the profiling rows is reported unavailable
    assert not [k for k in _reasons(text) if k[2] in PROF.values()]
    kind = "unix socket " if transport == "unix" else ""
    assert f"DCGM host engine (-r {kind}" in log
    assert "connected: profiling fields" in log


def test_a100_mig_instances_map_through_the_hierarchy(tmp_path: Path, engine: Engine) -> None:
    control = DcgmControl(tmp_path / "dcgm.conf")
    # The stub numbers GPU instances like DCGM (docs/simulator.md): GPU id * 7 + position, by
    # GPU instance profile, then NVML's order. GPU 1 holds 3g (NVML GI 1), 2g (GI 5) and 1g
    # (GI 13): DCGM's gpu_i:7 is NVML GI 13, gpu_i:9 is GI 1 - the reverse order. A blank on a
    # DCGM instance must land on the NVML instance the hierarchy names.
    control.blank(1001, Entity("gpu_i", 7), "not_permissioned")
    control.blank(1005, Entity("gpu_i", 9), "not_found")
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN, **control.env}
    with run_exporter(_exporter_args("a100-mig", engine.address), env=env) as exporter:
        text = _poll(exporter, _complete({f: PROF[f] for f in (1002, 1009)}, 8),
                     "the profiling families of 8 GPUs")
    fams = _families(text)
    assert fams["gpu_exporter_dcgm_up"] == {(): 1.0}
    used = _by(fams["DCGM_FI_DEV_FB_USED"], "gpu", "GPU_I_ID")
    total = _by(fams["DCGM_FI_DEV_FB_TOTAL"], "gpu", "GPU_I_ID")
    util = _by(fams["DCGM_FI_DEV_GPU_UTIL"], "gpu", "GPU_I_ID")
    mig = {k for k in used if k[1] is not None}
    assert {k[0] for k in mig} == {"0", "1", "2"}
    # instance-level fields: one series per MIG instance (GPU_I_PROFILE, GPU_I_ID) and per
    # GPU without MIG, exactly where the NVML per-instance series are
    reference = _label_sets(fams["DCGM_FI_DEV_FB_USED"])
    for fid in (1002, 1003, 1004, 1006, 1007, 1008):
        assert _label_sets(fams[PROF[fid]]) == reference, PROF[fid]
    gr = _by(fams[PROF[1001]], "gpu", "GPU_I_ID")
    dram = _by(fams[PROF[1005]], "gpu", "GPU_I_ID")
    assert ("1", "13") not in gr
    assert ("1", "1") not in dram
    assert set(gr) == set(used) - {("1", "13")}
    assert set(dram) == set(used) - {("1", "1")}
    for key in mig:
        occupancy = used[key] / total[key]  # the stub's activity of a MIG device
        if key != ("1", "13"):
            assert gr[key] == pytest.approx(occupancy, rel=1e-3), key
        if key != ("1", "1"):
            assert dram[key] == pytest.approx(0.8 * occupancy, rel=1e-3), key
        assert _by(fams[PROF[1002]], "gpu", "GPU_I_ID")[key] == pytest.approx(
            0.92 * occupancy, rel=1e-3)
    for key, value in util.items():  # GPUs without MIG: NVML's utilisation
        assert key[1] is None
        assert gr[key] == pytest.approx(value / 100)
    reasons = _reasons(text)
    assert reasons[("1", "13", PROF[1001])] == "not_permissioned"
    assert reasons[("1", "1", PROF[1005])] == "not_found"
    assert not [k for k in reasons if k[2] in PROF.values()
                and k not in {("1", "13", PROF[1001]), ("1", "1", PROF[1005])}]
    # PCIe bytes exist per GPU only: on a MIG GPU the GPU's value, repeated on its instances
    # like every device-level field (dcgm-exporter's layout)
    temp = fams["DCGM_FI_DEV_GPU_TEMP"]
    for fid in GPU_FIELDS:
        assert _label_sets(fams[PROF[fid]]) == _label_sets(temp), PROF[fid]
        per_gpu: dict[str, set[float]] = {}
        for (gpu, _gi), value in _by(fams[PROF[fid]], "gpu", "GPU_I_ID").items():
            per_gpu.setdefault(str(gpu), set()).add(value)
        assert all(len(values) == 1 for values in per_gpu.values()), per_gpu


def test_a_mig_change_at_run_time_is_watched_again_split_instances_once(
    tmp_path: Path, engine: Engine,
) -> None:
    # GPU 3 goes from whole to MIG while the exporter runs, with a 3g.40gb GPU instance split
    # into two compute instances: the watches follow the new layout (DCGM ids through the
    # hierarchy again), one series per GPU instance, where the NVML series are
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN}
    with run_exporter(_exporter_args("a100-mig", engine.address), env=env) as exporter:
        _poll(exporter, _complete({1001: PROF[1001]}, 8), "the profiling families of 8 GPUs")
        FaultInjector(tmp_path / "sim").mig_reconfigure(3, ["1c.3g.40gb", "2c.3g.40gb",
                                                             "1g.10gb"])

        def split(text: str) -> bool:
            used = _by(_families(text).get("DCGM_FI_DEV_FB_USED", {}), "gpu", "GPU_I_ID")
            gr = _by(_families(text).get(PROF[1001], {}), "gpu", "GPU_I_ID")
            mig3 = {k for k in used if k[0] == "3" and k[1] is not None}
            return len(mig3) == 2 and mig3 <= set(gr)
        text = _poll(exporter, split, "GPU 3's new MIG instances with profiling values")
    fams = _families(text)
    used = _by(fams["DCGM_FI_DEV_FB_USED"], "gpu", "GPU_I_ID")
    total = _by(fams["DCGM_FI_DEV_FB_TOTAL"], "gpu", "GPU_I_ID")
    gr = _by(fams[PROF[1001]], "gpu", "GPU_I_ID")
    on3 = {k for k in gr if k[0] == "3"}
    assert on3 == {k for k in used if k[0] == "3"}
    assert ("3", None) not in on3
    for key in on3:
        assert gr[key] == pytest.approx(used[key] / total[key], rel=1e-3), key
    assert _label_sets(fams[PROF[1002]]) == _label_sets(fams["DCGM_FI_DEV_FB_USED"])


def test_mig_device_fields_once_keeps_pcie_on_the_gpu(tmp_path: Path, engine: Engine) -> None:
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN}
    args = _exporter_args("a100-mig", engine.address, "--mig-device-fields-once")
    with run_exporter(args, env=env) as exporter:
        text = _poll(exporter, _complete({1009: PROF[1009]}, 8), "PCIe bytes of 8 GPUs")
    fams = _families(text)
    pcie = _by(fams[PROF[1009]], "gpu", "GPU_I_ID")
    assert set(pcie) == {(str(g), None) for g in range(8)}
    # as every device-level field in this mode: once, on the GPU, and no gap on the instances
    assert _label_sets(fams[PROF[1009]]) == _label_sets(fams["DCGM_FI_DEV_GPU_TEMP"])
    assert not [k for k in _reasons(text) if k[2] in PROF.values()]
    assert ("0", "7") in _by(fams[PROF[1001]], "gpu", "GPU_I_ID")


# ---------------------------------------------------------------------------- reasons


def test_blanks_statuses_and_profiling_failures_are_reasons_never_zeros(
    tmp_path: Path, engine: Engine,
) -> None:
    control = DcgmControl(tmp_path / "dcgm.conf")
    control.blank(1002, Entity("gpu", 0))
    control.blank(1003, Entity("gpu", 0), "not_supported")
    control.status(1004, Entity("gpu", 1), -29)  # REQUIRES_ROOT
    control.profiling_not_supported(2)
    control.library_error(3)
    control.mux(1)  # A.1 + A.2 + A.3 (one major) need three passes: PROFILING_MULTI_PASS
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN, **control.env}
    with run_exporter(_exporter_args("t4x4", engine.address), env=env) as exporter:
        text = _poll(exporter, lambda t: ("0", None, PROF[1002]) in _reasons(t),
                     "the first DCGM readout")
        fams = _families(text)
        reasons = _reasons(text)
        assert fams["gpu_exporter_dcgm_up"] == {(): 1.0}
        gr = _by(fams[PROF[1001]], "gpu")
        assert set(gr) == {("0",), ("1",)}  # GPUs 2 and 3: no profiling at all
        assert reasons[("0", None, PROF[1002])] == "blank"
        assert reasons[("0", None, PROF[1003])] == "not_supported"
        assert reasons[("1", None, PROF[1004])] == "not_permissioned"
        for fid, name in PROF.items():
            assert reasons[("2", None, name)] == "profiling_not_supported"
            assert reasons[("3", None, name)] == "profiling_library_error"
            if fid in (1006, 1008):  # the second and third group of one major: multi-pass
                for gpu in ("0", "1"):
                    assert reasons[(gpu, None, name)] == "profiling_multi_pass"
                    assert (gpu,) not in _by(fams.get(name, {}), "gpu")
            elif fid in (1001, 1002, 1009, 1010):  # other majors cost no pass: kept
                assert ("0",) in _by(fams[name], "gpu") or fid == 1002
                assert ("1",) in _by(fams[name], "gpu")
        # the rest of GPUs 0 and 1 is there with values; no reason-less gap anywhere
        for gpu in ("0", "1"):
            for name in PROF.values():
                present = (gpu,) in _by(fams.get(name, {}), "gpu")
                assert present != ((gpu, None, name) in reasons), (gpu, name)
        assert "profiling_multi_pass" in exporter.log

        # at run time: the profiling module goes away, then profiling pauses, then all is back
        control.clear()
        control.module_not_loaded()
        text = _poll(exporter, lambda t: _reasons(t).get(("0", None, PROF[1001]))
                     == "profiling_module_not_loaded", "module not loaded")
        assert PROF[1001] not in _families(text) or ("0",) not in _by(
            _families(text)[PROF[1001]], "gpu")
        control.clear()
        control.paused()
        text = _poll(exporter, lambda t: _reasons(t).get(("0", None, PROF[1001])) == "blank",
                     "profiling paused")
        control.clear()
        text = _poll(exporter, lambda t: ("0", None, PROF[1001]) not in _reasons(t),
                     "profiling back")
        assert _by(_families(text)[PROF[1001]], "gpu")[("0",)] == pytest.approx(
            _by(_families(text)["DCGM_FI_DEV_GPU_UTIL"], "gpu")[("0",)] / 100)


def test_hopper_keeps_gpm_and_never_reads_profiling_from_dcgm(
    tmp_path: Path, engine: Engine,
) -> None:
    # an engine that cannot profile anything: if the exporter asked it for H100 fields, they
    # would be absent with a profiling reason; GPM must give all of them
    control = DcgmControl(tmp_path / "dcgm.conf")
    control.profiling_not_supported(None)
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN, **control.env}
    with run_exporter(_exporter_args("h100x8", engine.address), env=env) as exporter:
        text = _poll(exporter, _complete(PROF, 8), "GPM profiling fields of 8 GPUs")
        log = exporter.log
    fams = _families(text)
    assert fams["gpu_exporter_dcgm_up"] == {(): 1.0}
    assert engine.accepted >= 1
    for name in PROF.values():
        assert len(fams[name]) == 8, name
    assert not [k for k, r in _reasons(text).items() if r in DCGM_REASONS - {"not_supported"}]
    assert "DCGM: GPU" not in log  # no watch planned on any GPU


# ---------------------------------------------------------------------------- no engine


def test_a_closed_port_serves_every_nvml_metric_and_dcgm_up_0_in_the_first_cycle(
    tmp_path: Path,
) -> None:
    plain_env = {"GPU_SIM_DIR": str(tmp_path / "plain"), **FROZEN}
    with run_exporter(["--simulate", "t4x4", "-c", "500"], env=plain_env) as exporter:
        plain = _families(exporter.metrics())
    port = _closed_port()
    env = {"GPU_SIM_DIR": str(tmp_path / "sim"), **FROZEN,
           "DCGM_REMOTE_HOSTENGINE_INFO": f"127.0.0.1:{port}"}
    with run_exporter(["--simulate", "t4x4", "-c", "500"], env=env) as exporter:
        first = exporter.metrics()  # the first snapshot (/ready answered 200)
        fams = _families(first)
        assert fams["gpu_exporter_dcgm_up"] == {(): 0.0}
        start = _collections(first)
        _poll(exporter, lambda t: _collections(t) >= start + 4, "four more cycles")
        log = exporter.log
    skip = {"gpu_exporter_dcgm_up", "gpu_exporter_field_supported"}
    nvml = {n for n in plain if n.startswith("DCGM_FI_")}
    assert nvml
    assert nvml <= set(fams)
    for name in nvml:
        assert _label_sets(fams[name]) == {
            tuple((k, "127.0.0.1" if k == "Hostname" else v) for k, v in labels)
            for labels in plain[name]}, name
    assert set(fams) - skip >= set(plain) - skip - {n for n in plain if "http" in n}
    reasons = _reasons(first)
    for gpu in "0123":
        for name in PROF.values():
            assert reasons[(gpu, None, name)] == "dcgm_down"
    warnings = [line for line in log.splitlines() if " WARNING " in line and "DCGM" in line]
    assert len(warnings) == 1, warnings
    assert f"127.0.0.1:{port}" in warnings[0]


# ---------------------------------------------------------------------------- outage


def test_a_lost_engine_is_one_warning_nvml_keeps_flowing_and_it_reconnects(
    tmp_path: Path, engine: Engine,
) -> None:
    env = {"GPU_SIM_DIR": str(tmp_path / "sim")}
    with run_exporter(_exporter_args("t4x4", engine.address), env=env) as exporter:
        _poll(exporter, _complete({1001: PROF[1001]}, 4), "profiling fields")
        engine.close()
        text = _poll(exporter, lambda t: "gpu_exporter_dcgm_up 0" in t, "dcgm_up 0")
        start = _collections(text)
        text = _poll(exporter, lambda t: _collections(t) >= start + 6, "six cycles while down")
        fams = _families(text)
        assert len(fams["DCGM_FI_DEV_GPU_TEMP"]) == 4
        assert len(fams["DCGM_FI_DEV_GPU_UTIL"]) == 4
        assert PROF[1001] not in fams
        assert _reasons(text)[("0", None, PROF[1001])] == "dcgm_down"
        assert all(v == 1 for v in fams["gpu_exporter_gpu_up"].values())
        warnings = [line for line in exporter.log.splitlines()
                    if " WARNING " in line and "DCGM" in line]
        assert len(warnings) == 1, warnings
        engine.open()
        # backoff doubles from 1 s to at most 60 s: reconnects within a bounded time
        text = _poll(exporter, lambda t: "gpu_exporter_dcgm_up 1" in t
                     and len(_families(t).get(PROF[1001], {})) == 4, "reconnected", timeout=120)
        log = exporter.log
    assert "connected again after" in log
    warnings = [line for line in log.splitlines() if " WARNING " in line and "DCGM" in line]
    assert len(warnings) == 1, warnings


# ---------------------------------------------------------------------------- off by default


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_plain_run_never_loads_libdcgm_or_its_bindings(tmp_path: Path, engine: Engine) -> None:
    env = {"GPU_SIM_DIR": str(tmp_path / "plain")}
    with run_exporter(["--simulate", "t4x4", "-c", "500"], env=env) as exporter:
        text = exporter.metrics()
        maps = _maps(exporter.process.pid)
    assert "libnvidia-ml.so.1" in maps  # the check sees the libraries the process mapped
    assert "libdcgm" not in maps
    assert "gpu_exporter_dcgm_up" not in text
    # the same check does see it when DCGM is asked for
    env = {"GPU_SIM_DIR": str(tmp_path / "dcgm")}
    with run_exporter(_exporter_args("t4x4", engine.address), env=env) as exporter:
        exporter.wait_for("gpu_exporter_dcgm_up 1")
        assert "libdcgm.so.4" in _maps(exporter.process.pid)
    # and the Python side: a whole plain run (main, one cycle served) imports no DCGM module;
    # the same probe lists them when DCGM is asked for
    assert _dcgm_modules_of_a_run(tmp_path / "main", []) == "[]"
    asked = _dcgm_modules_of_a_run(tmp_path / "asked", ["-r", f"127.0.0.1:{_closed_port()}"])
    assert "'gpu_exporter.dcgm'" in asked
    assert "'gpu_exporter.dcgmsource'" in asked


def _dcgm_modules_of_a_run(state: Path, args: list[str]) -> str:
    """The DCGM modules in ``sys.modules`` of ``gpu-exporter --simulate t4x4 ARGS`` once ready."""
    port = _closed_port()
    argv = ["--simulate", "t4x4", "-c", "500", "-a", f"127.0.0.1:{port}", *args]
    code = (
        "import os, sys, threading, time, urllib.request\n"
        "from gpu_exporter import cli\n"
        "DCGM = {'dcgm', 'dcgmsource', 'pydcgm', 'dcgm_agent', 'dcgm_structs'}\n"
        "def probe():\n"
        "    for _ in range(600):\n"
        "        try:\n"
        f"            urllib.request.urlopen('http://127.0.0.1:{port}/ready', timeout=5)\n"
        "        except OSError:\n"
        "            time.sleep(0.1)\n"
        "            continue\n"
        "        print(sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] in DCGM))\n"
        "        sys.stdout.flush()\n"
        "        os._exit(0)\n"
        "    os._exit(3)\n"
        "threading.Thread(target=probe, daemon=True).start()\n"
        f"cli.main({argv!r})\n"
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    child_env["GPU_SIM_DIR"] = str(state)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120, env=child_env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
