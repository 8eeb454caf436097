"""Build the container image with podman and run it with the simulator.

No container registry is reachable from CI, so the base image is made here: a Debian
bookworm minbase with python3 and python3-venv from debootstrap, trimmed of docs, man pages,
locales and apt caches (like the official slim Python images), cached as a tarball under
``build/image/`` keyed by the date so reruns on the same day skip the ~45 s debootstrap. The
package and its dependencies are pre-built as wheels on the host, so the build itself runs
with ``--network=none``.

Podman runs with its own storage under a temporary directory (never the machine's) and a
containers.conf that works around the host's limits: runc instead of crun (hybrid cgroups),
ulimits within the hard limits of this machine, the netavark network backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.chart_render import documents, render
from support.podman import Podman, private_podman

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubernetes"))
from fake_kubelet import FakeKubelet, pod

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "image"
WHEELS = BUILD_DIR / "wheels"
MIRROR = os.environ.get("GPU_EXPORTER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SIZE_LIMIT = 200 * 1000 * 1000  # bytes; the target ("under 200 MB")
UID = 0  # as dcgm-exporter's images: the kubelet's pod-resources socket is root's
TOOLS = {
    "podman": "apt-get install podman runc netavark aardvark-dns iptables catatonit uidmap",
    "runc": "apt-get install runc",
    "debootstrap": "apt-get install debootstrap",
    "promtool": "apt-get install prometheus",
}


def _require_tools() -> None:
    missing = [f"{tool} ({hint})" for tool, hint in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail("the image test needs: " + "; ".join(missing))
    if os.geteuid() != 0:
        pytest.fail("the image test needs root (debootstrap and rootful podman)")


def _run(args: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} -> rc {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def _base_tarball() -> Path:
    """Today's trimmed Debian base as a tarball, built with debootstrap when not cached."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    tarball = BUILD_DIR / f"base-bookworm-{dt.date.today():%Y%m%d}.tar"
    if tarball.exists():
        return tarball
    for old in BUILD_DIR.glob("base-bookworm-*.tar"):
        old.unlink()
    rootfs = BUILD_DIR / "rootfs.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        _run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
             "bookworm", str(rootfs), MIRROR],
            timeout=600,
        )
        for trimmed in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
                        "var/lib/apt/lists", "var/cache/apt", "var/log"):
            for child in (rootfs / trimmed).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        partial = tarball.with_suffix(".tar.tmp")
        _run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def _build_wheels() -> None:
    """Wheels of this tree and of every dependency, for a build without network."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for stale in WHEELS.glob("gpu_exporter-*.whl"):
        stale.unlink()
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--find-links", str(WHEELS),
         "--wheel-dir", str(WHEELS), str(ROOT)],
        timeout=600,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    _require_tools()
    with private_podman(tmp_path_factory.mktemp("podman")) as tool:
        yield tool


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    tarball = _base_tarball()
    base = "localhost/gpu-exporter-base:test"
    with tarball.open("rb") as stream:
        _run([*podman.base, "import", "-", base], timeout=300, env=podman.env, stdin=stream)
    _build_wheels()
    tag = "localhost/gpu-exporter:test"
    podman(
        "build", "--network=none", "--pull=never",
        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILD_IMAGE={base}",
        "--build-arg", f"WHEELS={WHEELS.relative_to(ROOT)}",
        "-t", tag, "-f", str(ROOT / "Dockerfile"), str(ROOT),
        timeout=600,
    )
    return tag


@pytest.fixture(scope="module")
def dcgm_image(podman: Podman, image: str) -> str:
    """The image built with ``--build-arg DCGM_CLIENT``: here the simulator's stub library
    stands in for the user's DCGM client library (the build loads it through the exporter's
    own loader, so a library without DCGM's calls fails the build)."""
    client = BUILD_DIR / "dcgm-client"
    shutil.rmtree(client, ignore_errors=True)
    client.mkdir(parents=True)
    shutil.copy2(ROOT / "src/gpu_exporter/simulator/lib/libdcgm.so.4", client / "libdcgm.so.4")
    base = "localhost/gpu-exporter-base:test"  # imported by ``image``
    tag = "localhost/gpu-exporter:dcgm-test"
    podman(
        "build", "--network=none", "--pull=never",
        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILD_IMAGE={base}",
        "--build-arg", f"WHEELS={WHEELS.relative_to(ROOT)}",
        "--build-arg", f"DCGM_CLIENT={client.relative_to(ROOT)}",
        "-t", tag, "-f", str(ROOT / "Dockerfile"), str(ROOT),
        timeout=600,
    )
    return tag


_DCGM_PROBE = (
    "import ctypes, os\n"
    "for name in ('libdcgm.so.4', 'libdcgm.so.3'):\n"
    " try:\n  ctypes.CDLL(name); print('found', name)\n"
    " except OSError:\n  print('absent', name)\n"
    "print('files', sorted(os.listdir('/opt/dcgm/lib')))"
)


def test_no_dcgm_library_by_default(podman: Podman, image: str) -> None:
    result = podman("run", "--rm", "--entrypoint", "python3", image, "-c", _DCGM_PROBE)
    assert result.stdout.split("\n")[:3] == [
        "absent libdcgm.so.4", "absent libdcgm.so.3", "files []"]


def test_dcgm_client_build_argument_adds_the_users_library(
    podman: Podman, dcgm_image: str,
) -> None:
    result = podman("run", "--rm", "--entrypoint", "python3", dcgm_image, "-c", _DCGM_PROBE)
    lines = result.stdout.split("\n")
    assert lines[0] == "found libdcgm.so.4"
    assert lines[2] == "files ['libdcgm.so.4']"
    # the exporter's own loader (sonames, no path) finds and initialises it
    load = ("from gpu_exporter.dcgm import Dcgm, load_library; "
            "lib = load_library(); Dcgm(lib); print(lib._name)")
    result = podman("run", "--rm", "--entrypoint", "/opt/gpu-exporter/bin/python3",
                    dcgm_image, "-c", load)
    assert result.stdout.strip() == "libdcgm.so.4"
    info = json.loads(podman("image", "inspect", dcgm_image).stdout)[0]
    assert info["Config"]["User"] == f"{UID}:{UID}"


CONTAINER_LIFETIME_S = 1200


@contextlib.contextmanager
def _container(
    podman: Podman, image: str, *args: str, init: bool = True, read_only: bool = False,
    extra: tuple[str, ...] = (),
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    # conmon kills it after CONTAINER_LIFETIME_S: a run killed before the teardown below
    # leaves no exporter running for longer
    options = ["--timeout", str(CONTAINER_LIFETIME_S), *(["--init"] if init else []), *extra]
    if read_only:  # as the Helm chart runs it: read-only root, a writable /tmp (tmpfs here)
        options.append("--read-only")
    container = podman(
        "run", "-d", *options, "-p", f"127.0.0.1:{port}:9400", image, *args
    ).stdout.strip()
    try:
        yield container, port
    finally:
        podman.quiet("rm", "-f", "-t", "2", container)


def _wait_for_metrics(podman: Podman, container: str, port: int, deadline_s: float) -> bytes:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = _get(f"http://127.0.0.1:{port}/metrics")
        except OSError as err:
            last = repr(err)
        else:
            if status == 200 and b"DCGM_FI_DEV_GPU_TEMP" in body:
                return body
            last = f"HTTP {status}, {len(body)} bytes"
        time.sleep(0.2)
    logs = podman.quiet("logs", container).stderr
    pytest.fail(f"no GPU metrics from the container within {deadline_s} s ({last}); logs:\n{logs}")


def test_image_is_small_and_runs_as_root_like_dcgm_exporter(podman: Podman, image: str) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    assert info["Size"] < SIZE_LIMIT, f"image is {info['Size'] / 1e6:.0f} MB"
    assert info["Config"]["User"] == f"{UID}:{UID}"  # numeric: runAsNonRoot can check it
    assert "9400/tcp" in info["Config"]["ExposedPorts"]


def test_no_nvml_library_unless_the_simulator_is_asked_for(podman: Podman, image: str) -> None:
    # On a GPU host the container toolkit injects the driver's libnvidia-ml.so.1; the image
    # itself must not put the simulated one (or any other) on the default search path.
    probe = (
        "import ctypes\n"
        "try:\n ctypes.CDLL('libnvidia-ml.so.1')\n"
        "except OSError:\n print('absent')"
    )
    result = podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe)
    assert result.stdout.strip() == "absent"


def test_the_fast_path_library_is_in_the_image(podman: Podman, image: str) -> None:
    # the workload collector's per-row sums and row values run in the package's C library
    probe = ("from gpu_exporter.fastpath import LIBRARY, load_rows, load_sums\n"
             "print(type(load_sums()).__name__, type(load_rows()).__name__, LIBRARY.name)")
    result = podman("run", "--rm", "--entrypoint", "/opt/gpu-exporter/bin/python3", image,
                    "-c", probe)
    assert result.stdout.split() == ["CSums", "CRows", "libgpu_exporter_fast.so"]


def test_simulated_container_serves_metrics(podman: Podman, image: str) -> None:
    with _container(
        podman, image, "--simulate", "h100x8", "-c", "1000", read_only=True
    ) as (container, port):
        body = _wait_for_metrics(podman, container, port, deadline_s=30)
        status, health = _get(f"http://127.0.0.1:{port}/health")
        uid = podman("exec", container, "id", "-u").stdout.strip()
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert lint.returncode != 1, lint.stdout.decode() + lint.stderr.decode()  # 1 = parse error
    text = body.decode()
    gpus = {line.split('gpu="', 1)[1].split('"', 1)[0]
            for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")}
    assert gpus == {str(i) for i in range(8)}
    assert status == 200
    assert health.strip() == b"OK"
    assert uid == str(UID)


def test_stops_gracefully_as_pid_1(podman: Podman, image: str) -> None:
    # Kubernetes runs the entrypoint as PID 1 with no init: SIGTERM must still stop it.
    with _container(podman, image, "--simulate", "h100x8", init=False) as (container, port):
        _wait_for_metrics(podman, container, port, deadline_s=30)
        podman("stop", "--time", "20", container, timeout=60)
        state = json.loads(podman("container", "inspect", container).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state  # 137 would mean SIGKILL after the stop timeout


# --- under the NVIDIA GPU Operator ------------------------------------------------------------

OPERATOR_FIXTURE = ROOT / "tests" / "migration" / "fixtures" / "gpu-operator" / (
    "dcgm-exporter-daemonset.json")


def _operator_pod(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str], list[str], Path]:
    """The GPU Operator's container (recorded in the fixture) as podman options.

    Returns the recorded container spec, its environment, the podman options and the host
    directory mounted at the pod-resources path (where a test puts a kubelet socket).
    """
    recorded = json.loads(OPERATOR_FIXTURE.read_text())
    spec = recorded["daemonset"]["container"]
    assert spec["command"] is None
    assert spec["args"] is None
    assert spec["securityContext"] == {"privileged": True}  # no runAsUser: the image's user
    env = {}
    for entry in [*spec["env"], *recorded["controller_env"]["standalone_dcgm"],
                  *recorded["controller_env"]["dra_node"]]:
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[entry["name"]] = OPERATOR_NODE if field == "spec.nodeName" else entry["value"]
    assert env["DCGM_EXPORTER_COLLECTORS"] == "/etc/dcgm-exporter/dcp-metrics-included.csv"
    assert env["DCGM_EXPORTER_KUBERNETES"] == "true"
    env["GPU_EXPORTER_SIMULATE"] = "h100x8"
    options = ["--privileged"]
    for name, value in env.items():
        options += ["-e", f"{name}={value}"]
    (mount,) = spec["volumeMounts"]  # hostPath volumes: directories of this test
    assert mount["mountPath"] == "/var/lib/kubelet/pod-resources"
    host = tmp_path / mount["name"]
    host.mkdir(mode=0o755)
    host.chmod(0o755)
    options += ["-v", f"{host}:{mount['mountPath']}:{'ro' if mount['readOnly'] else 'rw'}"]
    return spec, env, options, host


OPERATOR_NODE = "gpu-node-7"


def _kubelet_socket(directory: Path) -> FakeKubelet:
    """A kubelet pod-resources server in ``directory``, its socket root's with mode 0755."""
    kubelet = FakeKubelet(directory / "kubelet.sock").start()
    Path(kubelet.socket_path).chmod(0o755)
    return kubelet


def _gpu0_uuid(body: str) -> str:
    (line,) = [line for line in body.splitlines()
               if line.startswith("DCGM_FI_DEV_GPU_TEMP{") and 'gpu="0"' in line]
    return line.split('UUID="', 1)[1].split('"', 1)[0]


def test_runs_unchanged_under_the_gpu_operator_daemonset(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    # The GPU Operator runs the image it is pointed at (ClusterPolicy dcgmExporter.repository/
    # image/version) with no command or args, privileged, with the environment and mounts of its
    # DaemonSet (recorded from NVIDIA/gpu-operator in the fixture), and no runAsUser: the
    # image's own user reads the kubelet's socket, which belongs to root with mode 0755 as the
    # kubelet makes it. Simulated GPUs come through the environment too
    # (GPU_EXPORTER_SIMULATE), so the command line stays the operator's.
    spec, env, options, kubelet_dir = _operator_pod(tmp_path)
    (port_spec,) = spec["ports"]
    assert port_spec["containerPort"] == 9400
    assert env["DCGM_EXPORTER_LISTEN"] == ":9400"
    probe = spec["livenessProbe"]
    # The kubelet restarts the container after the initial delay plus three failed probes.
    deadline = probe["initialDelaySeconds"] + 3 * probe["periodSeconds"]
    with _kubelet_socket(kubelet_dir) as kubelet, _container(
        podman, image, init=False, extra=tuple(options)
    ) as (container, port):
        body = _wait_for_metrics(podman, container, port, deadline_s=deadline).decode()
        kubelet.set_pods([pod("trainer-0", "ml", {"main": {"nvidia.com/gpu": [_gpu0_uuid(body)]}})])
        # The operator's counters file (dcp-metrics-included.csv, upstream's, shipped in the
        # image) is the one in use: its profiling rates come with the second sample, and it
        # lacks the rows our default file adds (DCGM_FI_DEV_POWER_MGMT_LIMIT). The pod's labels
        # come with the kubelet's next List.
        until = time.monotonic() + 120
        while ("DCGM_FI_PROF_PCIE_TX_BYTES{" not in body or 'pod="trainer-0"' not in body) \
                and time.monotonic() < until:
            time.sleep(1)
            body = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        health = {
            path: _get(f"http://127.0.0.1:{port}{path}")[0]
            for path in (probe["httpGet"]["path"], spec["readinessProbe"]["httpGet"]["path"])
        }
        state = json.loads(podman("container", "inspect", container).stdout)[0]["State"]
        logs = podman.quiet("logs", container)
    log_text = logs.stdout + logs.stderr
    assert health == {"/health": 200}
    assert state["Running"] is True, state
    assert "DCGM_FI_PROF_PCIE_TX_BYTES{" in body
    assert "DCGM_FI_DEV_POWER_MGMT_LIMIT{" not in body
    temps = [line for line in body.splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")]
    assert len(temps) == 8
    assert all(f'ostname="{OPERATOR_NODE}"' in line for line in temps), temps[0]
    # Pod attribution through the root-owned socket: GPU 0 carries the pod, the others none.
    held = [line for line in temps if 'pod="trainer-0"' in line]
    assert len(held) == 1, temps
    for label in ('gpu="0"', 'namespace="ml"', 'container="main"'):
        assert label in held[0], held[0]
    assert "gpu_exporter_kubelet_up 1" in body
    assert kubelet.calls["List"] >= 1
    # Each said once, metrics keep flowing: the operator's standalone DCGM engine (named by
    # DCGM_REMOTE_HOSTENGINE_INFO) does not exist here, so the exporter names it once, warns
    # once that it is unreachable and reports gpu_exporter_dcgm_up 0 (on H100 nothing would
    # come from it anyway: GPM); DRA attribution needs the Kubernetes API, which this
    # container cannot reach.
    assert log_text.count("DCGM host engine for the profiling fields") == 1, log_text
    assert log_text.count("unreachable") == 1, log_text
    assert "gpu_exporter_dcgm_up 0" in body
    assert log_text.count("DRA attribution") == 1, log_text
    assert "not usable" not in log_text, log_text


def test_a_non_root_user_under_the_gpu_operator_is_told_why_pods_are_missing(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    # The same pod run as a non-root user (what an image with a non-root USER gets under the
    # operator): the socket refuses it, GPU metrics still flow, and the one warning says whose
    # socket it is and what to change.
    _spec, _env, options, kubelet_dir = _operator_pod(tmp_path)
    with _kubelet_socket(kubelet_dir) as kubelet, _container(
        podman, image, init=False, extra=(*options, "--user", "65534:65534")
    ) as (container, port):
        body = _wait_for_metrics(podman, container, port, deadline_s=60).decode()
        kubelet.set_pods([pod("trainer-0", "ml", {"main": {"nvidia.com/gpu": [_gpu0_uuid(body)]}})])
        time.sleep(6)  # longer than the kubelet refresh interval (5 s)
        body = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        logs = podman.quiet("logs", container)
    log_text = logs.stdout + logs.stderr
    assert "gpu_exporter_kubelet_up 0" in body
    assert 'pod="trainer-0"' not in body
    assert len([line for line in body.splitlines()
                if line.startswith("DCGM_FI_DEV_GPU_TEMP{")]) == 8
    assert kubelet.calls["List"] == 0
    assert log_text.count("not usable") == 1, log_text
    assert "this process runs as uid 65534" in log_text, log_text
    assert "belongs to uid 0" in log_text, log_text
    assert "mode 0755" in log_text, log_text
    assert "run as root" in log_text, log_text


# --- as the Helm chart runs it ----------------------------------------------------------------


def _pod_options(docs: list[dict[str, Any]], volumes_dir: Path,
                 configmaps: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """podman options and arguments for the chart's container, as a kubelet would set it up:
    ConfigMap volumes written out as files, subPath mounts of single files, hostPath volumes
    as empty directories, the security context, the environment."""
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            configmaps.setdefault(doc["metadata"]["name"], doc["data"])
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sources: dict[str, Path | None] = {}
    for volume in pod["volumes"]:
        where = volumes_dir / volume["name"]
        where.mkdir(parents=True)
        refs = []
        if "configMap" in volume:
            refs.append(volume["configMap"])
        refs += [s["configMap"] for s in volume.get("projected", {}).get("sources", [])
                 if "configMap" in s]
        for ref in refs:
            data = configmaps[ref["name"]]
            for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                (where / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (where / item["path"]).write_text(data[item["key"]])
        sources[volume["name"]] = None if "emptyDir" in volume else where
    options = []
    for mount in c["volumeMounts"]:
        source = sources[mount["name"]]
        if source is None:  # emptyDir: podman's --read-only gives /tmp a tmpfs already
            assert mount["mountPath"] == "/tmp"
            continue
        path = source / mount.get("subPath", "")
        options += ["-v", f"{path}:{mount['mountPath']}:{'ro' if mount.get('readOnly') else 'rw'}"]
    sc = c["securityContext"]
    options += ["--user", str(sc["runAsUser"]), "--cap-drop", "all"]
    if sc.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    assert sc["readOnlyRootFilesystem"] is True
    for entry in c["env"]:
        value = entry.get("value", "gpu-node-1")  # valueFrom: the node name (downward API)
        options += ["-e", f"{entry['name']}={value}"]
    return options, c["args"]


def test_chart_subpath_counters_pattern_starts_and_uses_the_custom_file(
    podman: Podman, image: str, tmp_path: Path
) -> None:
    # A counters CSV of one's own mounted by subPath under /etc/dcgm-exporter, as upstream's
    # values files do: the rendered pod (read-only root, the chart's files mounted beside it)
    # starts and serves exactly the custom file's fields.
    values = yaml.safe_load((ROOT / "tests" / "deploy" / "values" /
                             "subpath-counters.yaml").read_text())
    values["extraEnv"] = [{"name": "GPU_EXPORTER_SIMULATE", "value": "t4x4"}]
    custom = ("DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n"
              "DCGM_FI_DEV_POWER_USAGE, gauge, Power draw (in W).\n")
    options, args = _pod_options(documents(render(values)), tmp_path / "volumes",
                                 {"my-dcgm-counters": {"counters.csv": custom}})
    with _container(podman, image, *args, init=False, read_only=True,
                    extra=tuple(options)) as (container, port):
        body = _wait_for_metrics(podman, container, port, deadline_s=60).decode()
    families = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE DCGM_")}
    assert families == {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"}
