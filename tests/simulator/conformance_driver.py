"""Runs one unmodified third-party NVML client against the simulator and reports in JSON.

Usage (in a child process whose environment came from ``gpu-sim env``, as a user's would)::

    python conformance_driver.py nvitop-api|gpustat|py3nvml|pynvml-upstream [CASES.yaml]

The clients' code is not touched. The driver only *observes* the C calls they make: it wraps
the symbol lookup of the NVML binding they use (``pynvml._nvmlGetFunctionPointer``,
``py3nvml.py3nvml._nvmlGetFunctionPointer``) so that every call's return code is counted per
function. The last stdout line is ``{"codes": {function: {code: count}}, "errors": [...],
...}``; ``errors`` lists every exception a client raised that it did not handle itself.
"""

from __future__ import annotations

import collections
import ctypes
import inspect
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CODES: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


class _Observed:
    """A C function of the binding, counting its return codes; attributes pass through."""

    def __init__(self, name: str, fn: Any) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        ret = self._fn(*args)
        if isinstance(ret, int):
            CODES[self._name][ret] += 1
        return ret

    def __getattr__(self, key: str) -> Any:
        return getattr(self._fn, key)

    def __setattr__(self, key: str, value: Any) -> None:  # restype / argtypes
        setattr(self._fn, key, value)


def observe(module: Any) -> None:
    """Count the return codes of every C call ``module`` (a binding) makes from now on."""
    lookup = module._nvmlGetFunctionPointer
    cache = getattr(module, "_nvmlGetFunctionPointer_cache", None)
    if isinstance(cache, dict):
        cache.clear()

    def observed(name: Any) -> Any:
        text = name.decode() if isinstance(name, bytes) else str(name)
        return _Observed(text, lookup(name))

    module._nvmlGetFunctionPointer = observed


def _errors_of(fn: Callable[[], Any], label: str, errors: list[str]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every unhandled client exception is reported
        errors.append(f"{label}: {type(exc).__name__}: {exc}")
        return None


# ---------------------------------------------------------------------------- nvitop


def _sweep(obj: Any, errors: list[str], label: str) -> int:
    """Call every public no-argument method of an nvitop device object."""
    calls = 0
    for name in sorted(dir(type(obj))):
        if name.startswith("_"):
            continue
        try:
            attr = getattr(obj, name)  # properties run here
        except Exception as exc:  # noqa: BLE001 - reported like a method's
            errors.append(f"{label}.{name}: {type(exc).__name__}: {exc}")
            continue
        if not callable(attr) or inspect.isclass(attr):
            continue
        try:
            sig = inspect.signature(attr)
        except (TypeError, ValueError):
            continue
        if any(p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in sig.parameters.values()):
            continue
        calls += 1
        result = _errors_of(attr, f"{label}.{name}()", errors)
        if hasattr(result, "__enter__") and hasattr(result, "__exit__"):  # oneshot()
            def use(r: Any = result) -> None:
                with r:
                    pass
            _errors_of(use, f"with {label}.{name}()", errors)
    return calls


def run_nvitop_api() -> dict[str, Any]:
    import pynvml

    observe(pynvml)
    from nvitop import Device

    errors: list[str] = []
    calls = _sweep(Device, errors, "Device")  # classmethods / staticmethods
    devices = Device.all()
    names, mig = [], []
    for dev in devices:
        calls += _sweep(dev, errors, f"Device({dev.index})")
        names.append(dev.name())
        for m in dev.mig_devices():
            calls += _sweep(m, errors, f"MigDevice({m.index})")
            mig.append([dev.index, m.index, m.name(), m.memory_total()])
    return {"errors": errors, "calls": calls, "names": names, "mig": mig,
            "memory_total": [d.memory_total() for d in devices]}


# ---------------------------------------------------------------------------- gpustat


def run_gpustat() -> dict[str, Any]:
    import pynvml

    observe(pynvml)
    import gpustat

    errors: list[str] = []
    stats = _errors_of(lambda: gpustat.new_query().jsonify(), "gpustat.new_query()", errors)
    gpus = [] if stats is None else [
        {k: g[k] for k in ("index", "name", "memory.total", "temperature.gpu", "power.draw",
                           "utilization.gpu")} for g in stats["gpus"]]
    return {"errors": errors, "gpus": gpus}


# ---------------------------------------------------------------------------- py3nvml


def run_py3nvml() -> dict[str, Any]:
    from py3nvml import nvidia_smi, py3nvml

    observe(py3nvml)
    errors: list[str] = []
    py3nvml.nvmlInit()
    count = py3nvml.nvmlDeviceGetCount()
    # the library's own device query (nvidia-smi -q as XML); it calls the legacy
    # nvmlDeviceGetPciInfo_v2 first, where 0.2.7 crashed on a 68-byte write
    xml = ""
    try:
        xml = nvidia_smi.XmlDeviceQuery()
    except KeyError as exc:  # py3nvml's brand table predates NVML_BRAND_NVIDIA (14)
        xml_error = f"KeyError: {exc}"
    except Exception as exc:  # noqa: BLE001
        xml_error = f"{type(exc).__name__}: {exc}"
        errors.append(f"XmlDeviceQuery(): {xml_error}")
    else:
        xml_error = ""
    # every one-argument device query py3nvml offers, on every GPU
    queried = 0
    for i in range(count):
        h = py3nvml.nvmlDeviceGetHandleByIndex(i)
        for name in sorted(dir(py3nvml)):
            fn = getattr(py3nvml, name)
            if (not name.startswith("nvmlDeviceGet") or name.startswith("nvmlDeviceGetHandleBy")
                    or not callable(fn)):
                continue
            params = list(inspect.signature(fn).parameters.values())
            if len(params) != 1 or params[0].default is not inspect.Parameter.empty:
                continue
            queried += 1
            try:
                fn(h)
            except py3nvml.NVMLError:
                pass  # its code is counted; the expectations file says which are expected
            except Exception as exc:  # noqa: BLE001
                errors.append(f"py3nvml.{name}(GPU {i}): {type(exc).__name__}: {exc}")
    pci = [py3nvml.nvmlDeviceGetPciInfo(py3nvml.nvmlDeviceGetHandleByIndex(i)).busId
           for i in range(count)]
    return {"errors": errors, "xml_error": xml_error, "xml_gpus": xml.count("<gpu id="),
            "queried": queried, "pci": [b.decode() if isinstance(b, bytes) else b for b in pci]}


# ---------------------------------------------------------------------------- pynvml cases


def run_pynvml_upstream(cases_file: Path) -> dict[str, Any]:
    import pynvml as n
    import yaml

    observe(n)
    spec = yaml.safe_load(cases_file.read_text())
    n.nvmlInit()
    driver = int(str(n.nvmlSystemGetDriverVersion()).split(".")[0])
    handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
    migs = []
    for h in handles:
        try:
            top = n.nvmlDeviceGetMaxMigDeviceCount(h)
        except n.NVMLError:
            continue
        for k in range(top):
            try:
                migs.append(n.nvmlDeviceGetMigDeviceHandleByIndex(h, k))
            except n.NVMLError:  # noqa: PERF203 - dense indices: the first error ends them
                break
    results: dict[str, Any] = {}
    for case in spec["cases"]:
        results[case["id"]] = _run_case(n, case, driver, handles, migs)
    return {"errors": [], "results": results, "driver": driver}


def _const(n: Any, v: Any) -> Any:
    return getattr(n, v) if isinstance(v, str) and v.startswith("NVML_") else v


def _targets(n: Any, over: str, handles: list[Any], migs: list[Any]) -> list[dict[str, Any]]:
    if over == "system":
        return [{}]
    if over == "mig_devices":
        return [{"h": m} for m in migs]
    if over == "device_pairs":
        return [{"h": a, "h2": b} for a in handles for b in handles if a is not b]
    if over == "links":
        return [{"h": h, "link": k} for h in handles for k in range(n.NVML_NVLINK_MAX_LINKS)]
    def fixture(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except n.NVMLError as exc:  # upstream's fixture fails: so does each test using it
            return exc

    return [{"h": h, "serial": fixture(lambda h=h: n.nvmlDeviceGetSerial(h)),
             "uuid": fixture(lambda h=h: n.nvmlDeviceGetUUID(h)),
             "bus_id": fixture(lambda h=h: n.nvmlDeviceGetPciInfo(h).busId), "pid": os.getpid()}
            for h in handles]


def _check(n: Any, check: Any, value: Any, call: Callable[[], Any]) -> bool:  # noqa: PLR0911
    kind, arg = (next(iter(check.items())) if isinstance(check, dict) else (check, None))
    if kind == "not_none":
        return value is not None
    if kind == "nonzero":
        return bool(value)
    if kind == "version":  # a dotted version above 0.0
        return tuple(int(p) for p in str(value).split(".") if p.isdigit()) > (0, 0)
    if kind == "ge":
        return bool(value >= arg)
    if kind == "between":
        return bool(_const(n, arg[0]) <= value <= _const(n, arg[1]))
    if kind == "attrs_ge_zero":
        return all(getattr(value, a) >= 0 for a in arg)
    if kind == "used_free_within_total":
        return bool(value.used <= value.total and value.free <= value.total)
    if kind == "increases_within_ms":
        deadline = time.monotonic() + arg / 1000
        while time.monotonic() < deadline:
            time.sleep(0.015)
            if call() > value:
                return True
        return False
    raise ValueError(f"unknown check {kind!r}")


def _run_case(n: Any, case: dict[str, Any], driver: int, handles: list[Any],
              migs: list[Any]) -> dict[str, Any]:
    gate = case.get("skip_if_driver_above")
    if gate is not None and driver > gate:
        return {"outcome": "skipped", "why": case["skip_reason"]}
    targets = _targets(n, case["over"], handles, migs)
    if not targets:
        return {"outcome": "skipped", "why": "nothing to run it on"}
    params = case.get("params", {})
    variants: list[dict[str, Any]] = [{}]
    for name, values in params.items():
        variants = [{**v, name: _const(n, x)} for v in variants for x in values]
    fn = getattr(n, case["call"])
    failures: collections.Counter[str] = collections.Counter()
    runs = 0
    for target in targets:
        for variant in variants:
            env = {**target, **variant}
            args = [env[a[1:]] if isinstance(a, str) and a.startswith("$") else _const(n, a)
                    for a in case.get("args", [])]
            runs += 1
            broken = [a for a in args if isinstance(a, n.NVMLError)]
            if broken:
                failures[type(broken[0]).__name__] += 1
                continue
            try:
                value = fn(*args)
                ok = _check(n, case["check"], value, lambda a=args: fn(*a))
                if not ok:
                    failures["check failed"] += 1
            except (n.NVMLError, ctypes.ArgumentError) as exc:  # binding errors too
                failures[type(exc).__name__] += 1
    if not failures:
        return {"outcome": "passed", "runs": runs}
    return {"outcome": "failed", "runs": runs, "failures": dict(failures)}


def main(argv: list[str]) -> int:
    mode = argv[1]
    try:
        if mode == "nvitop-api":
            report = run_nvitop_api()
        elif mode == "gpustat":
            report = run_gpustat()
        elif mode == "py3nvml":
            report = run_py3nvml()
        else:
            report = run_pynvml_upstream(Path(argv[2]))
    except Exception:  # noqa: BLE001 - reported, the test prints it
        report = {"errors": [traceback.format_exc()]}
    report["codes"] = {fn: {str(k): v for k, v in c.items()} for fn, c in sorted(CODES.items())}
    report["library"] = [line.split()[-1] for line in Path("/proc/self/maps").read_text()
                         .splitlines() if line.endswith("/libnvidia-ml.so.1")][:1]
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
