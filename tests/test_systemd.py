"""systemd socket activation: the exporter serves on the socket passed as fd 3."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from support.exporter import EXPORTER


def test_serves_on_the_passed_socket(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_", "DCGM_"))}
    env.update({"LISTEN_FDS": "1", "GPU_SIM_DIR": str(tmp_path)})
    # bash moves the socket to fd 3, as systemd does, then execs the exporter (same PID).
    process = subprocess.Popen(
        ["bash", "-c", f'exec 3<&{fd} {fd}<&-; exec "$0" --web-systemd-socket --simulate h100x8',
         str(EXPORTER)],
        pass_fds=(fd,), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    listener.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    if r.status == 200 and b"DCGM_FI_DEV_GPU_TEMP{" in r.read():
                        break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no /metrics on the passed socket"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_without_a_passed_socket_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GPU_", "DCGM_", "LISTEN_"))}
    env["GPU_SIM_DIR"] = str(tmp_path)
    result = subprocess.run(
        [str(EXPORTER), "--web-systemd-socket", "--simulate", "h100x8"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )
    assert result.returncode == 2
    assert "--web-systemd-socket: no socket passed by systemd" in result.stderr
    assert "Traceback" not in result.stderr
