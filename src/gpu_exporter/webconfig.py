"""The exporter-toolkit web config file (``--web-config-file``): TLS and response headers.

Parsing is pure (:func:`parse_web_config`); :func:`load_web_config` reads the file and
:func:`ssl_context` builds the server's TLS context. Keys this exporter does not implement
(``basic_auth_users``, inline certificates, ``rate_limit``) are refused with a message naming
the key rather than silently ignored.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import yaml

from gpu_exporter.config import TlsConfig, WebConfig

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_ALLOWED_HEADERS = {
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
}
_NOT_YET = {"basic_auth_users", "rate_limit"}


class WebConfigError(ValueError):
    """The web config file is unreadable or wrong; the message names the file and key."""


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def parse_web_config(text: str, *, source: str, base: Path) -> WebConfig:
    """Parse the YAML text; relative file paths are resolved against ``base``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise WebConfigError(f"{source}{line}: not valid YAML") from None
    root = _mapping(doc, source)
    for key in root:
        if key in _NOT_YET and root[key]:
            raise WebConfigError(f"{source}: key {key!r} is not supported yet")
        if key not in {"tls_server_config", "http_server_config"} | _NOT_YET:
            raise WebConfigError(f"{source}: unknown key {key!r}")
    tls = _parse_tls(_mapping(root.get("tls_server_config"), f"{source}: tls_server_config"),
                     source=source, base=base)
    http = _mapping(root.get("http_server_config"), f"{source}: http_server_config")
    headers = _mapping(http.get("headers"), f"{source}: http_server_config.headers")
    for name in headers:
        if name not in _ALLOWED_HEADERS:
            raise WebConfigError(
                f"{source}: http_server_config.headers: {name!r} is not one of "
                + ", ".join(sorted(_ALLOWED_HEADERS))
            )
    return WebConfig(tls=tls, headers=tuple((str(k), str(v)) for k, v in headers.items()))


def _parse_tls(tls: dict[str, Any], *, source: str, base: Path) -> TlsConfig | None:
    if not tls:
        return None
    where = f"{source}: tls_server_config"
    for inline in ("cert", "key", "client_ca"):
        if tls.get(inline):
            raise WebConfigError(
                f"{where}.{inline}: inline PEM is not supported yet; use {inline}_file"
            )
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not cert or not key:
        raise WebConfigError(f"{where}: cert_file and key_file are both required")
    auth = str(tls.get("client_auth_type", "NoClientCert"))
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: expected one of {', '.join(_CLIENT_AUTH)}, got {auth!r}"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = str(tls.get(name, default))
        if version not in _TLS_VERSIONS:
            raise WebConfigError(
                f"{where}.{name}: expected one of {', '.join(_TLS_VERSIONS)}, got {version!r}"
            )
        versions[name] = version
    ca = tls.get("client_ca_file")
    if auth != "NoClientCert" and not ca:
        # Go's RequestClientCert/RequireAnyClientCert accept certificates nobody verified;
        # Python's TLS verifies every client certificate it asks for, so a CA is required.
        raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
    return TlsConfig(
        cert_file=base / str(cert),
        key_file=base / str(key),
        client_ca_file=base / str(ca) if ca else None,
        client_auth_type=auth,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
    )


def load_web_config(path: Path) -> WebConfig:
    """Read and parse a web config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_web_config(text, source=str(path), base=path.parent)


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server TLS context for the config; raises WebConfigError on unreadable PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"tls_server_config: cannot load certificate or key: {exc}") from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    return context
