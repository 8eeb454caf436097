"""Web config parsing (pure) and a real TLS handshake against the built context."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from gpu_exporter.webconfig import WebConfigError, parse_web_config, ssl_context


def test_tls_and_headers(tmp_path: Path) -> None:
    config = parse_web_config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        source="web.yml", base=tmp_path,
    )
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "tls.crt"
    assert config.tls.client_ca_file == tmp_path / "ca.crt"
    assert config.headers == (("X-Frame-Options", "deny"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  a: $2y$10$x\n",
         "web.yml: key 'basic_auth_users' is not supported yet"),
        ("tls_server_config:\n  cert_file: a\n", "cert_file and key_file are both required"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Bogus\n",
         "client_auth_type: expected one of"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS9\n",
         "min_version: expected one of"),
        ("tls_config: {}\n", "web.yml: unknown key 'tls_config'"),
        ("a: [\n", "web.yml:2: not valid YAML"),
        ("- 1\n", "web.yml: expected a mapping"),
    ],
)
def test_errors_name_the_file_and_key(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(text, source="web.yml", base=tmp_path)
    assert message in str(info.value)


def test_context_loads_a_real_certificate(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "1", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True,
    )
    config = parse_web_config(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n",
        source="w", base=tmp_path,
    )
    assert config.tls is not None
    context = ssl_context(config.tls)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    missing = parse_web_config(
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: k.pem\n", source="w", base=tmp_path
    )
    assert missing.tls is not None
    with pytest.raises(WebConfigError, match="cannot load certificate"):
        ssl_context(missing.tls)


def test_client_auth_without_a_ca_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAnyClientCert\n",
            source="web.yml", base=tmp_path,
        )
    assert "client_auth_type RequireAnyClientCert needs client_ca_file" in str(info.value)
