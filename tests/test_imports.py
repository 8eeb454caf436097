"""What a running exporter has imported: only what its configuration calls.

The exporter runs in a subprocess through a wrapper that, when the CLI exits the process
after a clean shutdown, writes the modules in ``sys.modules`` (not the ``None`` entries that
keep one out), the OpenSSL libraries mapped into the process and the CA count of aiohttp's
two import-time client SSL contexts to a file. No sizes or times are asserted, only which
modules and libraries are loaded.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

from support.certs import make_ca, make_cert
from support.exporter import run_exporter

sys.path.insert(0, str(Path(__file__).resolve().parent / "kubernetes"))
from fake_kubelet import FakeKubelet, pod

from gpu_exporter.simulator import prepare

_PROBE = """
import os, sys
_real_exit = os._exit
def _exit(code):
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    connector = sys.modules.get("aiohttp.connector")
    context = None if connector is None else connector._SSL_CONTEXT_VERIFIED
    cas = "-" if context is None else str(context.cert_store_stats()["x509_ca"])
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split("/")[-1].split(".so")[0] for line in maps
                       if "/libssl.so" in line or "/libcrypto.so" in line})
    with open(os.environ["PROBE_OUT"], "w") as out:
        out.write(cas + "\\n" + ",".join(libs) + "\\n" + "\\n".join(loaded))
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
    "gpu_exporter.webconfig",  # only with --web-config-file
    # OpenSSL only when the run makes a TLS connection (a TLS listener, the Kubernetes API)
    "ssl", "_ssl", "_hashlib", "gpu_exporter.tlsverify",
)


class Probed:
    """What the probe wrote: aiohttp's CA count, the OpenSSL libraries, the modules."""

    def __init__(self, path: Path) -> None:
        self.cas, libs, *modules = path.read_text().splitlines()
        self.libs = set(filter(None, libs.split(",")))
        self.modules = set(modules)


def _loaded(args: list[str], env: dict[str, str], tmp_path: Path) -> Probed:
    """Run the exporter until its first complete scrape; what it had loaded."""
    out = tmp_path / "modules.txt"
    with run_exporter(args, env={**env, "PROBE_OUT": str(out)},
                      command=[sys.executable, "-c", _PROBE]) as exporter:
        exporter.wait_for('DCGM_FI_DEV_FB_USED{gpu="7"', timeout=60)
    return Probed(out)


def _under(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_a_plain_run_imports_only_what_it_calls(tmp_path: Path) -> None:
    """As deployed: the NVML library from the environment, no flags beyond the address."""
    env = prepare("h100x8", state_dir=tmp_path / "sim").env
    probed = _loaded([], env, tmp_path)
    assert "gpu_exporter.sampler" in probed.modules  # the probe saw the running exporter
    assert "aiohttp.web" in probed.modules
    assert "hashlib" in probed.modules  # aiohttp's hashes, from Python's own implementations
    for package in NEVER_IN_A_PLAIN_RUN:
        assert _under(probed.modules, package) == [], package
    assert probed.libs == set()  # neither libssl nor libcrypto is mapped
    assert probed.cas == "-"  # so aiohttp made no client context at all


def test_simulate_adds_only_the_simulator(tmp_path: Path) -> None:
    probed = _loaded(["--simulate", "h100x8"], {"GPU_SIM_DIR": str(tmp_path / "sim")},
                     tmp_path)
    modules = probed.modules
    assert "gpu_exporter.simulator.profiles" in modules
    assert "yaml" in modules  # the profile is YAML
    for package in ("importlib.metadata", "prometheus_client", "grpc",
                    "gpu_exporter.kubernetes", "gpu_exporter.auth", "ssl", "_hashlib"):
        assert _under(modules, package) == [], package
    assert probed.libs == set()


def _kube_run(tmp_path: Path, *extra: str) -> Probed:
    """``-k`` against the fake kubelet holding 110 pods (the bench's set-up)."""
    sock = tmp_path / "kubelet.sock"
    with FakeKubelet(sock) as kubelet:
        kubelet.set_pods([pod(f"p{i}", "ns", {"c": {"nvidia.com/gpu": [f"GPU-x{i}"]}})
                          for i in range(110)])
        env = prepare("h100x8", state_dir=tmp_path / "sim").env
        return _loaded(["-k", "--pod-resources-kubelet-socket", str(sock), *extra], env,
                       tmp_path)


def test_kubernetes_pod_resources_add_grpc_and_no_tls(tmp_path: Path) -> None:
    """``-k`` alone: the kubelet over its unix socket through grpc; no API client, no TLS."""
    probed = _kube_run(tmp_path)
    modules = probed.modules
    for package in ("grpc", "google.protobuf", "gpu_exporter.kubernetes.podresources",
                    "gpu_exporter.kubernetes.refresher"):
        assert _under(modules, package), package
    for package in ("gpu_exporter.kubernetes.apiserver", "yaml", "importlib.metadata",
                    "prometheus_client", "gpu_exporter.auth", "gpu_exporter.simulator.profiles",
                    "gpu_exporter.collectors.workload", "ssl", "_ssl", "_hashlib"):
        assert _under(modules, package) == [], package
    assert probed.libs == set()


def test_the_kubernetes_api_watch_brings_tls(tmp_path: Path) -> None:
    """``-k`` with pod labels: the API watch speaks HTTPS, so ``ssl`` is there."""
    probed = _kube_run(tmp_path, "--kubernetes-enable-pod-labels")
    assert "gpu_exporter.kubernetes.apiserver" in probed.modules
    assert {"ssl", "_ssl", "_hashlib"} <= probed.modules
    assert probed.libs == {"libssl", "libcrypto"}
    assert probed.cas == "0"  # aiohttp's import-time contexts still read no CA bundle


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
    probed = Probed(out)
    assert "yaml" in probed.modules
    assert {"ssl", "gpu_exporter.tlsverify"} <= probed.modules
    assert "importlib.metadata" not in probed.modules
    assert probed.cas == "0"


def test_a_web_config_file_without_tls_keeps_tls_out(tmp_path: Path) -> None:
    """Headers and basic auth over plain HTTP: the file is read, OpenSSL is not loaded."""
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    env = prepare("h100x8", state_dir=tmp_path / "sim").env
    probed = _loaded(["--web-config-file", str(web)], env, tmp_path)
    assert "yaml" in probed.modules
    assert "gpu_exporter.webconfig" in probed.modules
    for package in ("ssl", "_ssl", "_hashlib", "gpu_exporter.tlsverify"):
        assert _under(probed.modules, package) == [], package
    assert probed.libs == set()
