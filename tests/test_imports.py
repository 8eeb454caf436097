"""What a running exporter has imported: only what its configuration calls.

The exporter runs in a subprocess through a wrapper that, when the CLI exits the process
after a clean shutdown, writes ``sys.modules`` and the CA count of aiohttp's two import-time
client SSL contexts to a file. No sizes or times are asserted, only which modules are loaded.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

from support.certs import make_ca, make_cert
from support.exporter import run_exporter

from gpu_exporter.simulator import prepare

_PROBE = """
import os, sys
_real_exit = os._exit
def _exit(code):
    loaded = sorted(sys.modules)
    connector = sys.modules.get("aiohttp.connector")
    cas = ("-" if connector is None
           else str(connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"]))
    with open(os.environ["PROBE_OUT"], "w") as out:
        out.write(cas + "\\n" + "\\n".join(loaded))
    _real_exit(code)
os._exit = _exit
from gpu_exporter.cli import main
main()
"""

NEVER_IN_A_PLAIN_RUN = (
    "yaml",  # only with --config-file, --web-config-file or a simulator profile
    "importlib.metadata",  # the version is a constant
    "prometheus_client",  # self-metrics come from /proc/self
    "grpc", "google.protobuf", "gpu_exporter.kubernetes",  # only with -k
    "bcrypt", "gpu_exporter.auth",  # only with basic_auth_users
    "gpu_exporter.simulator.profiles",  # only with --simulate
    "gpu_exporter.workloads", "gpu_exporter.collectors.workload",  # only with --workload-metrics
)


def _loaded(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[str, set[str]]:
    """Run the exporter until its first complete scrape; (aiohttp CA count, modules)."""
    out = tmp_path / "modules.txt"
    with run_exporter(args, env={**env, "PROBE_OUT": str(out)},
                      command=[sys.executable, "-c", _PROBE]) as exporter:
        exporter.wait_for('DCGM_FI_DEV_FB_USED{gpu="7"', timeout=60)
    cas, *modules = out.read_text().splitlines()
    return cas, set(modules)


def _under(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_a_plain_run_imports_only_what_it_calls(tmp_path: Path) -> None:
    """As deployed: the NVML library from the environment, no flags beyond the address."""
    env = prepare("h100x8", state_dir=tmp_path / "sim").env
    cas, modules = _loaded([], env, tmp_path)
    assert "gpu_exporter.sampler" in modules  # the probe saw the running exporter
    assert "aiohttp.web" in modules
    for package in NEVER_IN_A_PLAIN_RUN:
        assert _under(modules, package) == [], package
    # aiohttp's import-time client contexts were made without reading the CA bundle
    assert cas == "0"


def test_simulate_adds_only_the_simulator(tmp_path: Path) -> None:
    cas, modules = _loaded(["--simulate", "h100x8"], {"GPU_SIM_DIR": str(tmp_path / "sim")},
                           tmp_path)
    assert "gpu_exporter.simulator.profiles" in modules
    assert "yaml" in modules  # the profile is YAML
    for package in ("importlib.metadata", "prometheus_client", "grpc",
                    "gpu_exporter.kubernetes", "gpu_exporter.auth"):
        assert _under(modules, package) == [], package
    assert cas == "0"


def test_a_web_config_file_brings_yaml_and_tls(tmp_path: Path) -> None:
    """The other side of the first test: the probe does see a lazily imported module."""
    ca = make_ca(tmp_path, "ca")
    cert, key = make_cert(tmp_path, "server", ca, "DNS:localhost,IP:127.0.0.1")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    env = prepare("h100x8", state_dir=tmp_path / "sim").env
    out = tmp_path / "modules.txt"
    client = ssl.create_default_context(cafile=str(ca[0]))
    with run_exporter(["--web-config-file", str(web)], env={**env, "PROBE_OUT": str(out)},
                      command=[sys.executable, "-c", _PROBE], context=client) as exporter:
        exporter.wait_for('DCGM_FI_DEV_FB_USED{gpu="7"', timeout=60)
    _, *modules = out.read_text().splitlines()
    assert "yaml" in modules
    assert "importlib.metadata" not in modules
