"""``gpu-sim``: list simulator profiles, print their environment, inject faults, read counters.

Examples::

    eval "$(gpu-sim env h100x8 --seed 1)"     # any NVML program now sees 8 simulated H100s
    gpu-sim fault xid 3 79                     # uses $GPU_SIM_DIR unless --state-dir is given
    gpu-sim fault lose 2
    gpu-sim fault error 999 nvmlDeviceGetSerial --index 1
    gpu-sim process add --gpu 0 --pid 4242 --mem-mib 8192 --sm 60
    gpu-sim calls
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import yaml

from gpu_exporter.simulator import (
    FaultInjector,
    SimulatorError,
    default_state_dir,
    list_profiles,
    prepare,
)
from gpu_exporter.simulator.faults import PROCESS_KINDS
from gpu_exporter.simulator.profiles import PROFILE_DIR


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _index(text: str) -> int | None:
    if text in {"all", "*"}:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid GPU index {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid GPU index {text!r}")
    return value


def _gpu(text: str) -> int:
    value = _index(text)
    if value is None:
        raise argparse.ArgumentTypeError("this fault needs one GPU index, not 'all'")
    return value


def _uint(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid non-negative integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid non-negative integer {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``gpu-sim`` argument parser."""
    p = _Parser(prog="gpu-sim", description="Simulated NVML: profiles, environment, faults.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the built-in profiles")

    env = sub.add_parser("env", help="print shell exports that make NVML programs see a profile")
    env.add_argument("profile", help="built-in profile name or path to a YAML profile")
    env.add_argument("--seed", type=_uint, default=0, help="seed of UUIDs and dynamics")
    env.add_argument("--state-dir", type=Path,
                     help="state directory (default: one per user, profile and seed under the "
                          "temp directory, reused by later calls)")
    env.add_argument("--frozen-time", type=_seconds,
                     help="pin the simulated clock at this many seconds (fully frozen values)")

    state = _Parser(add_help=False)
    state.add_argument("--state-dir", type=Path, default=None,
                       help="simulator state directory (default: $GPU_SIM_DIR)")

    fault = sub.add_parser("fault", help="inject a fault into running NVML programs")
    kinds = fault.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    k = kinds.add_parser("lose", parents=[state], help="GPU falls off the bus (GPU_IS_LOST)")
    k.add_argument("index", type=_gpu)
    k = kinds.add_parser("restore", parents=[state], help="undo 'lose'")
    k.add_argument("index", type=_gpu)
    k = kinds.add_parser("xid", parents=[state], help="deliver an XID event once")
    k.add_argument("index", type=_gpu)
    k.add_argument("code", type=_uint)
    k.add_argument("--gi", type=_uint, default=None, help="GPU instance id (MIG)")
    k.add_argument("--ci", type=_uint, default=None, help="compute instance id (MIG)")
    k = kinds.add_parser("ecc", parents=[state], help="add ECC errors")
    k.add_argument("index", type=_gpu)
    k.add_argument("--sbe", type=_uint, default=0, help="corrected (single-bit) errors to add")
    k.add_argument("--dbe", type=_uint, default=0, help="uncorrected (double-bit) errors to add")
    k = kinds.add_parser("unsupported", parents=[state],
                         help="make an NVML function or field:<id> NOT_SUPPORTED")
    k.add_argument("index", type=_index, help="GPU index or 'all'")
    k.add_argument("name", help="NVML function name or field:<id>")
    k = kinds.add_parser("error", parents=[state],
                         help="make an NVML function or field:<id> fail with a return code")
    k.add_argument("code", type=_uint, help="NVML return code, e.g. 999 (UNKNOWN), 4, 14")
    k.add_argument("name", help="NVML function name or field:<id>")
    k.add_argument("--index", type=_gpu, default=None, help="only on this GPU")
    k = kinds.add_parser("latency", parents=[state], help="slow a function down")
    k.add_argument("function", help="NVML function name or '*'")
    k.add_argument("seconds", type=_seconds)
    k.add_argument("--index", type=_gpu, default=None, help="only on this GPU")
    k = kinds.add_parser("hang", parents=[state], help="make a function block until cleared")
    k.add_argument("function", help="NVML function name or '*'")
    k.add_argument("--index", type=_gpu, default=None, help="only on this GPU")
    k = kinds.add_parser("mig", parents=[state],
                         help="reconfigure MIG (no profiles = MIG mode off)")
    k.add_argument("index", type=_gpu)
    k.add_argument("profiles", nargs="*", help="e.g. 3g.40gb 2g.20gb 1g.10gb")
    kinds.add_parser("clear", parents=[state], help="remove every fault")

    _process_parser(sub, state)

    calls = sub.add_parser("calls", parents=[state], help="print NVML call counts")
    calls.add_argument("--json", action="store_true", help="print JSON")
    return p


def _process_parser(sub: argparse._SubParsersAction[_Parser],
                    state: _Parser) -> None:
    proc = sub.add_parser("process", help="script the processes running on the GPUs")
    acts = proc.add_subparsers(dest="action", required=True, parser_class=_Parser)
    k = acts.add_parser("add", parents=[state],
                        help="start a process (replaces the GPU's seeded processes)")
    k.add_argument("--gpu", type=_gpu, required=True, help="GPU index")
    k.add_argument("--pid", type=_uint, required=True, help="host PID")
    k.add_argument("--kind", choices=PROCESS_KINDS, default="compute",
                   help="compute, graphics or mps (an MPS client); default compute")
    k.add_argument("--instance", type=_uint, default=None, help="MIG GPU instance id")
    k.add_argument("--mem-mib", type=_uint, default=0, help="GPU memory in MiB")
    for flag, what in (("--sm", "SM"), ("--mem", "memory"), ("--enc", "encoder"),
                       ("--dec", "decoder")):
        k.add_argument(flag, type=_uint, default=0, help=f"{what} utilisation in percent")
    k = acts.add_parser("remove", parents=[state], help="end a process")
    k.add_argument("--pid", type=_uint, required=True, help="host PID")
    k = acts.add_parser("clear", parents=[state], help="end every scripted process")
    k.add_argument("--gpu", type=_gpu, default=None, help="only on this GPU")
    k = acts.add_parser("list", parents=[state], help="print the running scripted processes")
    k.add_argument("--json", action="store_true", help="print JSON")


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    env = os.environ.get("GPU_SIM_DIR")
    if not env:
        raise SimulatorError("--state-dir is required (or set GPU_SIM_DIR, e.g. with "
                             "`eval \"$(gpu-sim env PROFILE)\"`)")
    return Path(env)


def _description(name: str) -> str:
    try:
        data = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def _fault(args: argparse.Namespace) -> None:
    inj = FaultInjector(_state_dir(args))
    kind = args.kind
    if kind == "lose":
        inj.lose_gpu(args.index)
    elif kind == "restore":
        inj.restore_gpu(args.index)
    elif kind == "xid":
        inj.xid(args.index, args.code, gi_id=args.gi, ci_id=args.ci)
    elif kind == "ecc":
        inj.ecc(args.index, sbe=args.sbe, dbe=args.dbe)
    elif kind == "unsupported":
        inj.unsupported(args.index, args.name)
    elif kind == "error":
        inj.error(args.index, args.name, args.code)
    elif kind == "latency":
        inj.latency(args.function, args.seconds, index=args.index)
    elif kind == "hang":
        inj.hang(args.function, index=args.index)
    elif kind == "mig":
        inj.mig_reconfigure(args.index, list(args.profiles))
    else:
        inj.clear()


def _process(args: argparse.Namespace) -> None:
    inj = FaultInjector(_state_dir(args))
    if args.action == "add":
        inj.add_process(args.pid, args.gpu, kind=args.kind, instance=args.instance,
                        mem_mib=args.mem_mib, sm=args.sm, mem=args.mem, enc=args.enc,
                        dec=args.dec)
    elif args.action == "remove":
        inj.remove_process(args.pid)
    elif args.action == "clear":
        inj.clear_processes(args.gpu)
    elif args.json:
        print(json.dumps(inj.processes(), indent=1))
    else:
        for p in inj.processes():
            where = f"{p['gpu']}" if p["instance"] is None else f"{p['gpu']}/gi{p['instance']}"
            print(f"{p['pid']:>8} gpu {where:8} {p['kind']:8} {p['mem_mib']:>7} MiB "
                  f"sm {p['sm']:>3}% mem {p['mem']:>3}% enc {p['enc']:>3}% dec {p['dec']:>3}%")


def run(argv: Sequence[str]) -> int:
    """Run ``gpu-sim`` with ``argv``; return the exit code (errors raise)."""
    args = build_parser().parse_args(list(argv))
    if args.command == "list":
        for name in list_profiles():
            print(f"{name:10} {_description(name)}".rstrip())
    elif args.command == "env":
        state_dir = args.state_dir or default_state_dir(args.profile, args.seed)
        session = prepare(args.profile, seed=args.seed, state_dir=state_dir,
                          frozen_time=args.frozen_time)
        for key, value in session.env.items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.command == "fault":
        _fault(args)
    elif args.command == "process":
        _process(args)
    else:
        counts = FaultInjector(_state_dir(args)).call_counts()
        if args.json:
            print(json.dumps(counts, indent=1, sort_keys=True))
        else:
            for name, count in sorted(counts.items()):
                print(f"{count:10d} {name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: one-line errors on stderr with exit code 2."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (SimulatorError, FileNotFoundError) as exc:
        print(f"gpu-sim: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"gpu-sim: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
