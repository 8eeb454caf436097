"""The running exporter behind its web config: real TLS clients (ssl, curl, openssl s_client).

Each client auth policy accepts and refuses the right clients; client_allowed_sans; TLS
version bounds; cipher suites and curves; basic auth; certificate rotation while serving;
and the start-up refusals (exit 2, one message, no traceback).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from support.certs import Pki, make_cert, make_pki
from support.exporter import EXPORTER, Exporter, run_exporter

ARGS = ["--simulate", "t4x4", "-c", "1000"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client(pki: Pki, cert: tuple[Path, Path] | None = None, **options: Any) -> ssl.SSLContext:
    """A client context trusting the test CA, optionally with a client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    for name, value in options.items():
        setattr(context, name, value)
    return context


@contextmanager
def exporter(pki: Pki, doc: dict[str, Any], context: ssl.SSLContext | None,
             headers: dict[str, str] | None = None, *extra: str) -> Iterator[Exporter]:
    path = pki.directory / "web.yml"
    path.write_text(yaml.safe_dump(doc))
    with run_exporter([*ARGS, "--web-config-file", str(path), *extra], context=context,
                      headers=headers) as running:
        yield running


def tls_doc(pki: Pki, **extra: object) -> dict[str, Any]:
    return {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                  **extra}}


def fetch(running: Exporter, context: ssl.SSLContext, path: str = "/metrics",
          headers: dict[str, str] | None = None) -> int | str:
    """The status of one GET with this client context, or the connection error's class."""
    saved = running.context
    running.context = context
    try:
        return running.get(path, headers=headers)[0]
    except (urllib.error.URLError, ssl.SSLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return type(reason).__name__
    finally:
        running.context = saved


def test_require_and_verify_client_cert_with_allowed_sans(pki: Pki) -> None:
    doc = tls_doc(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt",
                  client_allowed_sans=["scraper.example", "spiffe://t/other"])
    with exporter(pki, doc, client(pki, pki.client)) as running:
        assert fetch(running, client(pki, pki.client)) == 200
        assert fetch(running, client(pki)) != 200  # no certificate: handshake refused
        assert fetch(running, client(pki, pki.stranger)) != 200  # another CA
        assert fetch(running, client(pki, pki.other_client)) != 200  # SAN not listed
        assert fetch(running, client(pki, pki.client), "/health") == 200
        text = running.wait_for('gpu_exporter_http_connections_closed_total{reason="client_san"}'
                                " 1")
        assert 'reason="tls_handshake"' in text


@pytest.mark.parametrize("san", ["10.0.0.7", "spiffe://t/s"])
def test_allowed_sans_match_ip_and_uri(pki: Pki, san: str) -> None:
    doc = tls_doc(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt",
                  client_allowed_sans=[san])
    with exporter(pki, doc, client(pki, pki.client)) as running:
        assert fetch(running, client(pki, pki.other_client)) != 200


def test_verify_client_cert_if_given(pki: Pki) -> None:
    doc = tls_doc(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file="ca.crt")
    with exporter(pki, doc, client(pki)) as running:
        assert fetch(running, client(pki)) == 200
        assert fetch(running, client(pki, pki.client)) == 200
        assert fetch(running, client(pki, pki.stranger)) != 200


def test_request_client_cert_asks_and_never_verifies(pki: Pki) -> None:
    # Go's RequestClientCert: a certificate is asked for, none is required, none is verified.
    with exporter(pki, tls_doc(pki, client_auth_type="RequestClientCert"), client(pki)) as running:
        assert fetch(running, client(pki)) == 200
        assert fetch(running, client(pki, pki.client)) == 200
        assert fetch(running, client(pki, pki.stranger)) == 200  # another CA: not verified
        asked = _certificate_request(running, pki)
    assert asked, "the server never asked for a client certificate"


@pytest.mark.parametrize("policy", ["RequireAnyClientCert", "RequireClientCert"])
def test_require_any_client_cert_needs_one_and_never_verifies(pki: Pki, policy: str) -> None:
    with exporter(pki, tls_doc(pki, client_auth_type=policy), client(pki, pki.client)) as running:
        assert fetch(running, client(pki, pki.client)) == 200
        assert fetch(running, client(pki, pki.stranger)) == 200  # another CA: not verified
        assert fetch(running, client(pki)) != 200  # no certificate: handshake refused
        running.wait_for('gpu_exporter_http_connections_closed_total{reason="tls_handshake"}')
        curl = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(pki.ca),
             "--cert", str(pki.stranger[0]), "--key", str(pki.stranger[1]),
             running.url + "/health"],
            capture_output=True, text=True, timeout=30, check=False)
    assert curl.stdout == "200", curl.stderr


def _certificate_request(running: Exporter, pki: Pki) -> bool:
    """Whether the server sends a CertificateRequest (openssl s_client, TLS 1.2 to see it)."""
    host, port = running.url.removeprefix("https://").rsplit(":", 1)
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_2", "-CAfile", str(pki.ca),
         "-servername", "localhost"],
        input="", capture_output=True, text=True, timeout=30, check=False)
    return "Acceptable client certificate CA names" in result.stdout or (
        "Client Certificate Types" in result.stdout)


def test_no_client_cert_never_asks(pki: Pki) -> None:
    with exporter(pki, tls_doc(pki), client(pki)) as running:
        assert fetch(running, client(pki)) == 200
        assert fetch(running, client(pki, pki.stranger)) == 200  # not asked, not checked
        assert not _certificate_request(running, pki)
        plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                running.url.replace("https", "http") + "/metrics"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert plain.stdout != "200"


def test_tls_version_bounds_and_cipher_suites(pki: Pki) -> None:
    doc = tls_doc(pki, min_version="TLS12", max_version="TLS12",
                  cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
                  curve_preferences=["CurveP384"])
    with exporter(pki, doc, client(pki)) as running:
        tls13_only = client(pki, minimum_version=ssl.TLSVersion.TLSv1_3)
        assert fetch(running, tls13_only) != 200
        other_suite = client(pki)
        other_suite.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        other_suite.maximum_version = ssl.TLSVersion.TLSv1_2
        assert fetch(running, other_suite) != 200
        host, port = running.url.removeprefix("https://").rsplit(":", 1)
        with ssl.create_connection((host, int(port)), timeout=10) as sock, \
                client(pki).wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        # (the server's certificate is ECDSA P-256, so a client must also accept P-256 for it)
        for groups, ok in (("P-256", False), ("P-256:P-384", True)):
            result = subprocess.run(
                ["openssl", "s_client", "-connect", f"{host}:{port}", "-groups", groups,
                 "-CAfile", str(pki.ca), "-servername", "localhost", "-brief"],
                input="", capture_output=True, text=True, timeout=30, check=False)
            assert ("Verification: OK" in result.stderr) is ok, result.stderr
            if ok:
                assert "Server Temp Key: ECDH, secp384r1" in result.stderr, result.stderr


def test_tls13_minimum_refuses_tls12_clients(pki: Pki) -> None:
    with exporter(pki, tls_doc(pki, min_version="TLS13"), client(pki)) as running:
        assert fetch(running, client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)) != 200
        assert fetch(running, client(pki)) == 200


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_over_mtls_with_curl(pki: Pki) -> None:
    hashed = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(rounds=4)).decode()
    doc = {**tls_doc(pki, client_auth_type="RequireAndVerifyClientCert",
                     client_ca_file="ca.crt"),
           "basic_auth_users": {"prometheus": hashed},
           "http_server_config": {"headers": {"X-Frame-Options": "deny"}}}
    good = _basic("prometheus", "s3cret-pass")
    with exporter(pki, doc, client(pki, pki.client), good) as running:
        status, _, headers = running.get("/metrics")
        assert status == 200
        assert headers["X-Frame-Options"] == "deny"
        assert headers["Server"] == "gpu-exporter"
        for bad in ({"Authorization": ""}, _basic("prometheus", "wrong"),
                    _basic("nobody", "s3cret-pass"), {"Authorization": "Basic !!!"},
                    {"Authorization": "Bearer abc"}):
            for path in ("/metrics", "/health", "/ready", "/"):
                status, _, headers = running.get(path, headers=bad)
                assert status == 401, (bad, path)
                assert headers["WWW-Authenticate"].startswith("Basic realm=")
                assert headers["X-Frame-Options"] == "deny"
        base = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(pki.ca),
                "--cert", str(pki.client[0]), "--key", str(pki.client[1])]
        url = running.url.replace("127.0.0.1", "localhost") + "/metrics"
        ok = subprocess.run([*base, "-u", "prometheus:s3cret-pass", url], capture_output=True,
                            text=True, timeout=30, check=False)
        assert ok.stdout == "200"
        wrong = subprocess.run([*base, "-u", "prometheus:nope", url], capture_output=True,
                               text=True, timeout=30, check=False)
        assert wrong.stdout == "401"
        no_cert = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  "--cacert", str(pki.ca), "-u", "prometheus:s3cret-pass", url],
                                 capture_output=True, text=True, timeout=30, check=False)
        assert no_cert.stdout == "000"
        running.wait_for('gpu_exporter_http_requests_refused_total{reason="unauthorized"}')
        assert "s3cret-pass" not in running.log
        assert "wrong" not in running.log


def _peer_der(running: Exporter, pki: Pki) -> bytes:
    host, port = running.url.removeprefix("https://").rsplit(":", 1)
    with ssl.create_connection((host, int(port)), timeout=10) as sock, \
            client(pki).wrap_socket(sock, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_certificate_rotation_while_serving(pki: Pki, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki.server[0], live / "tls.crt")
    shutil.copy(pki.server[1], live / "tls.key")
    doc = {"tls_server_config": {"cert_file": str(live / "tls.crt"),
                                 "key_file": str(live / "tls.key")}}
    with exporter(pki, doc, client(pki)) as running:
        first = _peer_der(running, pki)
        assert first == ssl.PEM_cert_to_DER_cert(pki.server[0].read_text())
        # a rotated certificate (same CA, new key), written as Kubernetes does: new files
        ca = (pki.ca, pki.directory / "ca.key")
        new_cert, new_key = make_cert(tmp_path, "rotated", ca, "DNS:localhost,IP:127.0.0.1")
        staged = live / "tls.key.new"
        shutil.copy(new_key, staged)
        staged.replace(live / "tls.key")  # half-way: the key no longer matches the cert
        _until(lambda: "web config not reloaded" in running.log)
        assert "does not match the certificate" in running.log
        running.wait_for("gpu_exporter_web_config_last_reload_successful 0")
        assert _peer_der(running, pki) == first  # the last good configuration still serves
        assert running.get("/metrics")[0] == 200
        shutil.copy(new_cert, live / "tls.crt.new")
        (live / "tls.crt.new").replace(live / "tls.crt")
        rotated = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        _until(lambda: _peer_der(running, pki) == rotated)
        running.wait_for("gpu_exporter_web_config_last_reload_successful 1")
        # SIGHUP re-reads at once, even when nothing changed
        running.process.send_signal(signal.SIGHUP)
        _until(lambda: running.log.count("web config") >= 2 and "SIGHUP" in running.log)


def test_basic_auth_users_change_without_restart(pki: Pki) -> None:
    first = bcrypt.hashpw(b"one", bcrypt.gensalt(rounds=4)).decode()
    second = bcrypt.hashpw(b"two", bcrypt.gensalt(rounds=4)).decode()
    doc: dict[str, Any] = {"basic_auth_users": {"p": first}}
    path = pki.directory / "auth.yml"
    path.write_text(yaml.safe_dump(doc))
    with run_exporter([*ARGS, "--web-config-file", str(path)],
                      headers=_basic("p", "one")) as running:
        assert running.get("/metrics")[0] == 200
        path.write_text(yaml.safe_dump({"basic_auth_users": {"p": second}}))
        _until(lambda: running.get("/metrics")[0] == 401)
        assert running.get("/metrics", headers=_basic("p", "two"))[0] == 200
        path.write_text("basic_auth_users:\n  p: [oops]\n")  # a bad edit keeps "two"
        _until(lambda: "web config not reloaded" in running.log)
        assert "basic_auth_users.p: expected a bcrypt hash" in running.log
        assert running.get("/metrics", headers=_basic("p", "two"))[0] == 200


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                "client_auth_typ": "RequireAndVerifyClientCert"}},
         "tls_server_config.client_auth_typ: unknown key (did you mean 'client_auth_type'?)"),
        ({"tls_server_config": {"cert_file": "server.key", "key_file": "server.crt"}},
         "are cert_file and key_file swapped?"),
        ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}},
         "missing.crt: cannot read: No such file or directory"),
        ({"http_server_config": {"headers": {"X-XSS-Protection": "0\r\nX-Evil: 1"}}},
         "control characters"),
        ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                "min_version": "TLS13", "max_version": "TLS12"}},
         "min_version TLS13 is above max_version TLS12"),
        ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                "client_auth_type": "RequireAnyClientCert",
                                "client_ca_file": "ca.crt"}},
         "client_auth_type is RequireAnyClientCert, so no client certificate would be checked"),
        ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                "client_ca_file": "ca.crt"}},
         "a client CA is set but client_auth_type is NoClientCert"),
        ({"http_server_config": {"headers": {"X-Frame-Options": ["deny"]}}},
         "X-Frame-Options: expected text, got a list"),
    ],
)
def test_bad_web_config_exits_2_with_one_message(pki: Pki, doc: dict[str, Any],
                                                 message: str) -> None:
    path = pki.directory / "bad.yml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run([str(EXPORTER), *ARGS, "-a", "127.0.0.1:0", "--web-config-file",
                             str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "latin1", "deep", "huge"])
def test_special_web_config_files_exit_2(tmp_path: Path, target: str) -> None:
    path = Path(target)
    if target == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif target == "latin1":
        path = tmp_path / "latin1.yml"
        path.write_bytes(b"basic_auth_users:\n  j\xf6rg: x\n")
    elif target == "deep":
        path = tmp_path / "deep.yml"
        path.write_bytes(b"a: " + b"[" * 20000 + b"]" * 20000)
    elif target == "huge":
        path = tmp_path / "huge.yml"
        path.write_bytes(b"# padding\n" * 200_000)
    result = subprocess.run([str(EXPORTER), *ARGS, "-a", "127.0.0.1:0", "--web-config-file",
                             str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_probe_listener_serves_health_only_without_credentials(pki: Pki) -> None:
    doc = tls_doc(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with exporter(pki, doc, client(pki, pki.client), None,
                  "--web-probe-address", f"127.0.0.1:{port}") as running:
        probe = Exporter(running.process, f"http://127.0.0.1:{port}", running.log_lines)
        assert probe.get("/health")[0] == 200
        _until(lambda: probe.get("/ready")[0] == 200)
        assert probe.get("/metrics")[0] in {404, 405}
        assert probe.get("/")[0] == 404


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
