"""Opens NVML (or the simulator, only when asked) and the sampler for the server.

Everything here runs in a worker thread: opening NVML can block on a real driver.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_exporter import __version__
from gpu_exporter.config import Config
from gpu_exporter.errors import BadInputError, StartupError
from gpu_exporter.model import Cycle, Native
from gpu_exporter.nvml import Nvml, NvmlError, NvmlLibraryNotFound
from gpu_exporter.sampler import DEFAULT_DEADLINE_S, Sampler

if TYPE_CHECKING:
    from gpu_exporter.dcgmsource import DcgmSource
    from gpu_exporter.workloads.podjoin import PodDirectoryHolder

log = logging.getLogger(__name__)

SIM_STATE_ENV = "GPU_SIM_DIR"
CLOSE_TIMEOUT_S = 3.0
"""How long shutdown waits for NVML calls in progress before giving up on them."""


def gpu_deadline(collect_interval: float) -> float:
    """How long one GPU's part of a cycle may take before it is reported hung (pure).

    The collect interval, kept within 1-10 s: a hung GPU is noticed within one interval on
    ordinary settings, and a very short interval does not turn slow-but-working GPUs down.
    """
    return min(max(collect_interval, 1.0), 10.0)


def build_info(driver_version: str, nvml_version: str) -> Native:
    """The ``gpu_exporter_build_info`` sample."""
    return Native(
        "gpu_exporter_build_info",
        1.0,
        (
            ("version", __version__),
            ("python_version", platform.python_version()),
            ("driver_version", driver_version),
            ("nvml_version", nvml_version),
        ),
    )


class Backend:
    """The NVML library and the sampler, opened together and closed together."""

    pods: PodDirectoryHolder | None = None
    """With ``--workload-metrics`` and ``-k``: where the collection loop publishes the pod
    directory (:meth:`Refresher.pod_directory`) that names the workload collector's pods."""

    def __init__(
        self, nvml: Nvml, sampler: Sampler, *, scratch: Path | None = None,
        dcgm: DcgmSource | None = None,
    ) -> None:
        self._nvml = nvml
        self._sampler = sampler
        self._scratch = scratch
        self._dcgm = dcgm
        self._build_info = build_info(
            nvml.driver_version() or "unknown", nvml.nvml_version() or "unknown"
        )

    def collect_once(self) -> Cycle:
        """One blocking collection cycle."""
        return self._sampler.collect_once()

    def set_wanted(self, fields: frozenset[int], names: dict[int, str]) -> None:
        """Switch to the fields (and metric names) of a reloaded counters file."""
        self._sampler.set_wanted(fields, names)

    def build_info(self) -> Native:
        """The ``gpu_exporter_build_info`` sample (versions read once at start)."""
        return self._build_info

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the sampler's and DCGM's threads, then shut NVML down unless a call is stuck.

        ``nvmlShutdown`` under a thread that is still inside NVML (a hung GPU; or the DCGM
        thread, whose simulated engine reads the same NVML) is undefined behaviour, so it is
        skipped then: the process is exiting, the driver cleans up.
        """
        try:
            idle = self._sampler.close(timeout_s)
        except Exception:
            log.exception("stopping the sampler failed")
            idle = False
        if self._dcgm is not None and not self._dcgm.close(timeout_s):
            log.warning("the DCGM thread is still in a call %gs after shutdown began; not "
                        "waiting for it", timeout_s)
            idle = False
        if idle:
            self._nvml.close()
        elif self._sampler.workers_idle:
            # only the event thread is still inside nvmlEventSetWait (uninterruptible, and not
            # worth waiting for): no nvmlShutdown under it; the driver releases at exit
            log.debug("NVML event wait still in progress: exiting without nvmlShutdown")
        else:
            log.warning("NVML calls still in progress %gs after shutdown began (a hung GPU?): "
                        "not calling nvmlShutdown", timeout_s)
        _discard(self._scratch)


def _discard(scratch: Path | None) -> None:
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def simulator_state_dir(config: Config) -> tuple[Path | None, Path | None]:
    """The simulator's state directory, and the one to delete at exit if we made it.

    ``$GPU_SIM_DIR`` (set by ``gpu-sim env`` or a test) is used as is, so faults can be
    injected from outside; otherwise a private temporary directory is made and removed.
    """
    if config.simulate is None:
        return None, None
    state = os.environ.get(SIM_STATE_ENV)
    if state:
        return Path(state), None
    scratch = Path(tempfile.mkdtemp(prefix="gpu-exporter-sim-"))
    return scratch, scratch


def open_nvml(config: Config, state_dir: Path | None = None) -> Nvml:
    """Initialise NVML: the host driver's library, or the simulator with ``--simulate``.

    Raises:
        StartupError: no NVML library on this host, or NVML failed to initialise.
        BadInputError: the simulator profile is unknown or malformed.
    """
    try:
        return Nvml(simulate=config.simulate, seed=config.simulate_seed, state_dir=state_dir)
    except NvmlLibraryNotFound as exc:
        raise StartupError(str(exc)) from None
    except NvmlError as exc:
        raise StartupError(f"NVML failed to initialise: {exc}") from None
    except ValueError as exc:  # the simulator's SimulatorError: a bad profile
        raise BadInputError(f"--simulate: {exc}") from None


def open_dcgm(config: Config) -> DcgmSource | None:
    """The DCGM source when ``-r``/``--dcgm-local`` asked for one (its thread connects).

    Imported only then: a plain run never loads ctypes declarations of libdcgm. With
    ``--simulate`` the simulator's stub engine library is used.
    """
    if config.dcgm is None:
        return None
    from gpu_exporter.dcgmsource import DcgmSource, wait_bound  # noqa: PLC0415 - only if asked

    library = None
    if config.simulate is not None:
        from gpu_exporter import simulator  # noqa: PLC0415 - only with --simulate

        library = str(simulator.library_path().with_name("libdcgm.so.4"))
    return DcgmSource(config.dcgm, update_us=int(config.collect_interval * 1e6),
                      wait_s=wait_bound(gpu_deadline(config.collect_interval)), library=library)


def open_backend(config: Config, fields: frozenset[int], names: dict[int, str]) -> Backend:
    """Open NVML (and DCGM when asked for) and build the sampler for the wanted DCGM fields."""
    state_dir, scratch = simulator_state_dir(config)
    try:
        nvml = open_nvml(config, state_dir)
    except BaseException:
        _discard(scratch)
        raise
    workloads = None
    pods = None
    if config.workloads is not None:
        from gpu_exporter.collectors.workload import (  # noqa: PLC0415  # only when asked
            WorkloadCollector,
        )
        from gpu_exporter.workloads.podjoin import PodDirectoryHolder  # noqa: PLC0415

        pods = PodDirectoryHolder() if config.kube.enabled else None
        workloads = WorkloadCollector(config.workloads, pods=pods)
    try:
        dcgm = open_dcgm(config)
    except BaseException:
        nvml.close()
        _discard(scratch)
        raise

    def undo() -> None:
        if dcgm is None or dcgm.close():
            nvml.close()
        _discard(scratch)

    try:
        sampler = Sampler(
            nvml=nvml,
            fields=fields,
            devices=config.devices,
            xid_window_s=config.xid_window,
            clock_events_window_s=config.clock_events_window,
            names=names,
            deadline_s=DEFAULT_DEADLINE_S,
            slow_s=gpu_deadline(config.collect_interval),
            mig_device_fields_once=config.mig_device_fields_once,
            placeholder_zeros=not config.omit_unsupported_zeros,
            workloads=workloads,
            dcgm=dcgm,
        )
    except ValueError as exc:
        undo()
        raise BadInputError(str(exc)) from None  # the message names -d/--devices
    except BaseException:
        undo()
        raise
    try:
        backend = Backend(nvml, sampler, scratch=scratch, dcgm=dcgm)
        backend.pods = pods
        log.info(
            "NVML %s, driver %s: %d GPU(s)%s",
            nvml.nvml_version(), nvml.driver_version(), nvml.device_count(),
            f" (simulated profile {config.simulate})" if config.simulate else "",
        )
    except BaseException:
        if sampler.close() and (dcgm is None or dcgm.close()):
            nvml.close()
        _discard(scratch)
        raise
    return backend
