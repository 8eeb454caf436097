"""The exporter-toolkit web config file (``--web-config-file``): TLS, basic auth, headers.

The format and its meaning are those of prometheus/exporter-toolkit (docs/security.md lists
every key). The file fails closed: an unknown key at any depth, a value of the wrong type, a
combination that would leave the server weaker than asked (a client CA without a policy
that verifies, ``client_allowed_sans`` without verified client certificates, ``min_version``
above ``max_version``) or a setting Python's TLS cannot honour exactly is refused with one
message naming the file, the key path and the problem.

* :func:`read_config_file` reads a file with a size cap, refusing special files (FIFOs,
  devices) and non-UTF-8 text;
* :func:`parse_web_config` is pure: YAML text to a :class:`~gpu_exporter.config.WebConfig`;
* :func:`load_web_config` combines both;
* :func:`ssl_context` builds the server's TLS context, reading the certificate, key and CA
  (files or inline PEM) and naming the file and the problem when one is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_exporter.config import RateLimit, TlsConfig, WebConfig
from gpu_exporter.errors import WebConfigError
from gpu_exporter.inputfile import InputFileError, read_regular_file

if TYPE_CHECKING:
    import ssl

    import yaml

MAX_FILE_BYTES = 1 << 20
"""Largest web config, certificate, key or CA file read (1 MiB; real ones are a few KiB)."""

CLIENT_AUTH_TYPES = (
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
"""The five Go ``tls.ClientAuthType`` policies the toolkit accepts (plus the legacy alias
``RequireClientCert`` of ``RequireAnyClientCert``)."""

VERIFYING = {"VerifyClientCertIfGiven": 1, "RequireAndVerifyClientCert": 2}
"""Policies that verify client certificates, and the ``ssl`` verify mode that does exactly
that (``ssl.CERT_OPTIONAL`` = 1: ask, verify when one is sent; ``ssl.CERT_REQUIRED`` = 2:
refuse a client without one). Numbers, so that parsing a file never imports ``ssl``
(about 4 MiB of RSS with libssl): :func:`ssl_context` turns them into ``ssl.VerifyMode``."""

UNVERIFIED = {"RequestClientCert": False, "RequireAnyClientCert": True,
              "RequireClientCert": True}
"""Policies that ask for a client certificate and never verify it (value: one is required).
Python's ``ssl`` cannot do that; :mod:`gpu_exporter.tlsverify` installs OpenSSL's verify
callback for them, or the configuration is refused."""

TLS_VERSIONS = {"TLS10": 0x0301, "TLS11": 0x0302, "TLS12": 0x0303, "TLS13": 0x0304}
"""Go names -> protocol version numbers (the values of ``ssl.TLSVersion``; numbers for the
reason given at :data:`VERIFYING`)."""
SUPPORTED_TLS_VERSIONS = ("TLS12", "TLS13")
"""OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level, so a ``TLS10``/``TLS11``
bound could not be honoured; those names are refused with that reason."""

CIPHER_SUITES = {
    # Go name (crypto/tls CipherSuites()) -> OpenSSL name, TLS 1.0-1.2 suites.
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256")
"""TLS 1.3 suites: accepted names that, as in Go, do not restrict anything (TLS 1.3 suites
are not configurable)."""

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}
"""Go curve names -> OpenSSL group names."""

HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": (),
    "Strict-Transport-Security": (),
}
"""Headers the file may set, with their allowed values (empty: any text)."""

_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
_ROOT_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def read_config_file(path: Path, *, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`read_regular_file`).

    FIFOs, devices and directories are refused without blocking.

    Raises:
        WebConfigError: naming ``what`` (a key path) and the file.
    """
    try:
        return read_regular_file(path, limit=limit)
    except InputFileError as exc:
        raise WebConfigError(f"{what}: {exc}") from None


def load_web_config(path: Path) -> WebConfig:
    """Read and parse a web config file; relative paths in it are relative to its folder."""
    data = read_config_file(path, what="web config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    config = parse_web_config(text, source=str(path), base=path.parent)
    return WebConfig(
        tls=config.tls, headers=config.headers, basic_auth_users=config.basic_auth_users,
        rate_limit=config.rate_limit, http2=config.http2, path=path,
    )


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    import yaml  # noqa: PLC0415  # only with --web-config-file: never loaded otherwise

    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list or a mapping)
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


def _strict_loader() -> type[yaml.SafeLoader]:
    """PyYAML's safe loader refusing duplicate mapping keys (as Go's strict unmarshal does).

    Made when a file is read, so that a run without a web config file never imports yaml.
    """
    import yaml  # noqa: PLC0415  # see above

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader whose mappings refuse a key given twice."""

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_mapping)
    return StrictLoader


def _load_yaml(text: str, source: str) -> object:
    import yaml  # noqa: PLC0415  # see _strict_loader

    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise WebConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise WebConfigError(f"{source}: not valid YAML: nested too deeply") from None


def parse_web_config(text: str, *, source: str, base: Path) -> WebConfig:
    """Parse and validate the YAML text; relative file paths are resolved against ``base``.

    Files are not read here (see :func:`ssl_context`).
    """
    root = _mapping(_load_yaml(text, source), source, _ROOT_KEYS, "the file")
    at = _At(source)
    tls = _parse_tls(_mapping(root.get("tls_server_config"), at("tls_server_config"),
                              _TLS_KEYS), at=at, base=base)
    http = _mapping(root.get("http_server_config"), at("http_server_config"),
                    ("http2", "headers"))
    http2 = _bool(http, "http2", at("http_server_config.http2"), default=True)
    headers = _parse_headers(http.get("headers"), at)
    users = _parse_users(root.get("basic_auth_users"), at)
    rate_limit = _parse_rate_limit(root.get("rate_limit"), at)
    return WebConfig(tls=tls, headers=headers, basic_auth_users=users,
                     rate_limit=rate_limit, http2=http2)


class _At:
    """Formats ``<file>: <key path>`` for messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, path: str) -> str:
        return f"{self.source}: {path}"


def _mapping(value: object, where: str, keys: tuple[str, ...],
             what: str = "") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in keys:
            hint = _nearest(str(key), keys)
            raise WebConfigError(
                f"{where}{'.' if what == '' else ': '}{key}: unknown key"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; expected one of {', '.join(keys)}"
            )
    return value


def _nearest(key: str, keys: tuple[str, ...]) -> str | None:
    def distance(a: str, b: str) -> int:
        row = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            prev, row[0] = row[0], i
            for j, cb in enumerate(b, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
        return row[-1]

    best = min(keys, key=lambda k: distance(key.lower(), k.lower()))
    return best if distance(key.lower(), best.lower()) <= max(2, len(best) // 4) else None


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _str(mapping: dict[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected text, got {_kind(value)}")
    if value == "":
        return None
    return value


def _bool(mapping: dict[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = mapping.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise WebConfigError(f"{where}: expected true or false, got {_kind(value)}")
    return value


def _str_list(mapping: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise WebConfigError(f"{where}: expected a list, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise WebConfigError(f"{where}[{i}]: expected text, got {_kind(item)}")
    return tuple(value)


def _parse_tls(  # noqa: PLR0912  # one check after another, in file order
    tls: dict[str, Any], *, at: _At, base: Path,
) -> TlsConfig | None:
    where = "tls_server_config"
    text = {k: _str(tls, k, at(f"{where}.{k}")) for k in
            ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file",
             "client_auth_type", "min_version", "max_version")}
    sans = _str_list(tls, "client_allowed_sans", at(f"{where}.client_allowed_sans"))
    suites = _str_list(tls, "cipher_suites", at(f"{where}.cipher_suites")) or ()
    curves = _str_list(tls, "curve_preferences", at(f"{where}.curve_preferences")) or ()
    prefer = _bool(tls, "prefer_server_cipher_suites",
                   at(f"{where}.prefer_server_cipher_suites"), default=True)
    enabled = any(text[k] for k in ("cert", "key", "client_ca", "cert_file", "key_file",
                                    "client_ca_file", "client_auth_type"))
    if not enabled:
        given = [k for k, v in tls.items() if v is not None]
        if given:
            # The toolkit would silently serve plain HTTP here; refuse instead.
            raise WebConfigError(
                f"{at(where)}: {', '.join(given)} given but no certificate: set cert_file "
                "and key_file (or cert and key) to serve TLS"
            )
        return None
    for inline in ("cert", "key", "client_ca"):
        if text[inline] and text[f"{inline}_file"]:
            raise WebConfigError(f"{at(where)}: set {inline} or {inline}_file, not both")
    if not (text["cert"] or text["cert_file"]):
        raise WebConfigError(f"{at(where)}: missing one of cert or cert_file")
    if not (text["key"] or text["key_file"]):
        raise WebConfigError(f"{at(where)}: missing one of key or key_file")
    auth = text["client_auth_type"] or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES and auth not in UNVERIFIED:
        raise WebConfigError(
            f"{at(where + '.client_auth_type')}: expected one of "
            f"{', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}"
        )
    has_ca = bool(text["client_ca"] or text["client_ca_file"])
    if has_ca and auth not in VERIFYING:
        raise WebConfigError(
            f"{at(where)}: a client CA is set but client_auth_type is {auth}, so no client "
            "certificate would be checked; set client_auth_type: RequireAndVerifyClientCert"
        )
    if auth in VERIFYING and not has_ca:
        raise WebConfigError(
            f"{at(where + '.client_auth_type')}: {auth} needs client_ca_file (or client_ca) "
            "to verify client certificates against"
        )
    if sans is not None:
        if auth not in VERIFYING:
            raise WebConfigError(
                f"{at(where + '.client_allowed_sans')}: needs verified client certificates: "
                "set client_auth_type: RequireAndVerifyClientCert and client_ca_file"
            )
        if not sans:
            raise WebConfigError(
                f"{at(where + '.client_allowed_sans')}: empty list: no client could connect; "
                "list the allowed SANs or remove the key"
            )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = text[name] or default
        if version not in TLS_VERSIONS:
            raise WebConfigError(
                f"{at(where + '.' + name)}: expected one of {', '.join(TLS_VERSIONS)}, "
                f"got {version!r}"
            )
        if version not in SUPPORTED_TLS_VERSIONS:
            raise WebConfigError(
                f"{at(where + '.' + name)}: {version} cannot be honoured: this OpenSSL refuses "
                "TLS 1.0 and 1.1; use TLS12 or TLS13"
            )
        versions[name] = version
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(
            f"{at(where)}: min_version {versions['min_version']} is above max_version "
            f"{versions['max_version']}: no handshake could succeed"
        )
    for i, suite in enumerate(suites):
        if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
            raise WebConfigError(
                f"{at(f'{where}.cipher_suites[{i}]')}: unknown cipher suite {suite!r}; "
                f"expected Go names: {', '.join((*CIPHER_SUITES, *TLS13_SUITES))}"
            )
    if (suites and versions["min_version"] == "TLS12"
            and not any(s in CIPHER_SUITES for s in suites)):
        raise WebConfigError(
            f"{at(where + '.cipher_suites')}: lists only TLS 1.3 suites (which are not "
            "configurable) while TLS 1.2 is allowed: no TLS 1.2 client could connect; add a "
            "TLS 1.2 suite or set min_version: TLS13"
        )
    for i, curve in enumerate(curves):
        if curve not in CURVES:
            raise WebConfigError(
                f"{at(f'{where}.curve_preferences[{i}]')}: unknown curve {curve!r}; expected "
                f"one of {', '.join(CURVES)}"
            )
    if len(curves) > 1:
        raise WebConfigError(
            f"{at(where + '.curve_preferences')}: {len(curves)} curves given; Python's TLS "
            "can restrict the key exchange to one curve only, so a preference order cannot "
            "be honoured: list one curve"
        )

    def path(key: str) -> Path | None:
        value = text[key]
        return base / value if value else None

    return TlsConfig(
        cert_file=path("cert_file"), key_file=path("key_file"), cert=text["cert"],
        key=text["key"], client_ca_file=path("client_ca_file"), client_ca=text["client_ca"],
        client_auth_type=auth, client_allowed_sans=sans,
        min_version=versions["min_version"], max_version=versions["max_version"],
        cipher_suites=suites, curve_preferences=curves, prefer_server_cipher_suites=prefer,
    )


def _parse_headers(value: object, at: _At) -> tuple[tuple[str, str], ...]:
    where = "http_server_config.headers"
    headers = _mapping(value, at(where), tuple(HEADERS))
    result = []
    for name, text in headers.items():
        key = at(f"{where}.{name}")
        if not isinstance(text, str):
            raise WebConfigError(f"{key}: expected text, got {_kind(text)}")
        if not _HEADER_VALUE.fullmatch(text):
            raise WebConfigError(
                f"{key}: control characters (CR, LF, NUL...) are not allowed in a header value"
            )
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            raise WebConfigError(f"{key}: expected one of {', '.join(allowed)}, got {text!r}")
        if text:  # blank: unset, as the toolkit documents
            result.append((name, text))
    return tuple(result)


def _parse_users(value: object, at: _At) -> tuple[tuple[str, str], ...]:
    where = "basic_auth_users"
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise WebConfigError(f"{at(where)}: expected a mapping of user: bcrypt hash, "
                             f"got {_kind(value)}")
    users = []
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise WebConfigError(f"{at(where)}: user name {user!r} is not text")
        if ":" in user or not _HEADER_VALUE.fullmatch(user):
            raise WebConfigError(
                f"{at(where)}: user name {user!r}: ':' and control characters cannot be sent "
                "in basic authentication"
            )
        # The hash is a secret: never echoed in a message.
        if not isinstance(hashed, str):
            raise WebConfigError(f"{at(f'{where}.{user}')}: expected a bcrypt hash as text, "
                                 f"got {_kind(hashed)}")
        match = _BCRYPT.fullmatch(hashed)
        if match is None:
            raise WebConfigError(
                f"{at(f'{where}.{user}')}: not a bcrypt hash ($2a$, $2b$ or $2y$, cost, 53 "
                "characters of salt and hash; for example from htpasswd -nBC 10)"
            )
        if not 4 <= int(match.group(1)) <= 31:  # bcrypt's cost range
            raise WebConfigError(f"{at(f'{where}.{user}')}: bcrypt cost "
                                 f"{match.group(1)} outside 4-31")
        users.append((user, hashed))
    return tuple(users)


def _parse_rate_limit(value: object, at: _At) -> RateLimit | None:
    where = "rate_limit"
    limit = _mapping(value, at(where), ("interval", "burst"))
    if not limit:
        return None
    interval = parse_duration(limit.get("interval"), at(f"{where}.interval"))
    burst = limit.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise WebConfigError(f"{at(f'{where}.burst')}: expected a whole number, got "
                             f"{_kind(burst)}")
    if interval == 0:
        return None  # the toolkit's "0 disables the limiter"
    if burst < 1:
        raise WebConfigError(
            f"{at(f'{where}.burst')}: {burst}: with a non-zero interval no request could "
            "ever be served; set burst to 1 or more"
        )
    return RateLimit(interval=interval, burst=burst)


def parse_duration(value: object, where: str) -> float:
    """A Go duration (``500ms``, ``1m30s``, ``0``) in seconds (pure)."""
    if value is None:
        return 0.0
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a duration such as 1s or 500ms, got "
                             f"{_kind(value)}")
    if value == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise WebConfigError(f"{where}: {value!r} is not a duration such as 1s, 500ms or 1m30s")
    return total


# --- TLS context -------------------------------------------------------------------------

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _pem_kinds(data: bytes) -> set[str]:
    return {m.group(1).decode("ascii") for m in _BEGIN.finditer(data)}


def _pem(tls: TlsConfig, key: str, what: str) -> tuple[bytes, str]:
    """The PEM bytes of cert/key/client_ca and a description naming where they came from."""
    path: Path | None = getattr(tls, f"{key}_file")
    if path is not None:
        return (read_config_file(path, what=f"tls_server_config.{key}_file"),
                f"tls_server_config.{key}_file ({path})")
    inline: str | None = getattr(tls, key)
    if inline is None:
        msg = f"{what}: no {key}"
        raise WebConfigError(msg)
    return inline.encode("utf-8", "surrogateescape"), f"tls_server_config.{key} (inline)"


def _check_cert(data: bytes, where: str) -> None:
    kinds = _pem_kinds(data)
    if "CERTIFICATE" in kinds:
        return
    if any(k.endswith("PRIVATE KEY") for k in kinds):
        raise WebConfigError(
            f"{where}: holds a private key, not a certificate: are cert_file and key_file "
            "swapped?"
        )
    raise WebConfigError(f"{where}: no PEM certificate (-----BEGIN CERTIFICATE-----) found")


def _check_key(data: bytes, where: str) -> None:
    kinds = _pem_kinds(data)
    if "ENCRYPTED PRIVATE KEY" in kinds or b"Proc-Type: 4,ENCRYPTED" in data:
        raise WebConfigError(f"{where}: the private key is encrypted; the web config has no "
                             "passphrase setting: give an unencrypted key")
    if any(k.endswith("PRIVATE KEY") for k in kinds):
        return
    if "CERTIFICATE" in kinds:
        raise WebConfigError(
            f"{where}: holds a certificate, not a private key: are cert_file and key_file "
            "swapped?"
        )
    raise WebConfigError(f"{where}: no PEM private key (-----BEGIN ... PRIVATE KEY-----) found")


@contextlib.contextmanager
def _as_files(cert: bytes, key: bytes) -> Iterator[tuple[str, str]]:
    """Paths the ``ssl`` module can load ``cert`` and ``key`` from, never written to disk."""
    fds = []
    try:
        for name, data in (("cert", cert), ("key", key)):
            fd = os.memfd_create(f"gpu-exporter-{name}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, data)
        yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
    finally:
        for fd in fds:
            os.close(fd)


def _no_passphrase() -> bytes:
    # Never let OpenSSL prompt on the terminal for an encrypted key.
    raise WebConfigError("encrypted key")


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server TLS context honouring every setting of ``tls``; reads the PEM data now.

    Raises:
        WebConfigError: a file is unreadable, holds the wrong thing, the key does not match
            the certificate, or a setting cannot be applied; the message names the key path
            and the file.
    """
    import ssl  # noqa: PLC0415  # only when TLS is configured (see VERIFYING)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion(TLS_VERSIONS[tls.min_version])
    context.maximum_version = ssl.TLSVersion(TLS_VERSIONS[tls.max_version])
    cert, cert_where = _pem(tls, "cert", "tls_server_config")
    key, key_where = _pem(tls, "key", "tls_server_config")
    _check_cert(cert, cert_where)
    _check_key(key, key_where)
    with _as_files(cert, key) as (cert_path, key_path):
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                raise WebConfigError(
                    f"{key_where}: the private key does not match the certificate in "
                    f"{cert_where}"
                ) from None
            where = key_where if "KEY" in reason and "CERT" not in reason else cert_where
            raise WebConfigError(f"{where}: cannot load: {_ssl_reason(exc)}") from None
        except (WebConfigError, OSError) as exc:
            raise WebConfigError(f"{key_where}: cannot load: {exc}") from None
    _apply_client_auth(context, tls)
    _apply_suites(context, tls)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:  # one at most (parse_web_config refuses more)
        curve = tls.curve_preferences[0]
        try:
            context.set_ecdh_curve(CURVES[curve])
        except (ssl.SSLError, ValueError) as exc:
            raise WebConfigError(
                f"tls_server_config.curve_preferences: {curve} is not available in this "
                f"Python's TLS ({_ssl_reason(exc)})"
            ) from None
    return context


def _apply_client_auth(context: ssl.SSLContext, tls: TlsConfig) -> None:
    """Set ``client_auth_type`` on ``context``, loading the client CA where it verifies."""
    import ssl  # noqa: PLC0415  # see ssl_context

    from gpu_exporter.tlsverify import UnverifiedClientCerts, UnverifiedError  # noqa: PLC0415

    if tls.client_auth_type in VERIFYING:
        ca, ca_where = _pem(tls, "client_ca", "tls_server_config")
        if "CERTIFICATE" not in _pem_kinds(ca):
            raise WebConfigError(f"{ca_where}: no PEM certificate found: no client could be "
                                 "verified")
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise WebConfigError(f"{ca_where}: cannot load: {_ssl_reason(exc)}") from None
        context.verify_mode = ssl.VerifyMode(VERIFYING[tls.client_auth_type])
    elif tls.client_auth_type in UNVERIFIED:
        try:
            UnverifiedClientCerts().apply(context, require=UNVERIFIED[tls.client_auth_type])
        except UnverifiedError as exc:
            raise WebConfigError(
                f"tls_server_config.client_auth_type: {tls.client_auth_type} cannot be "
                f"honoured in this Python ({exc}); use VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert with client_ca_file"
            ) from None
    else:
        context.verify_mode = ssl.CERT_NONE


def _apply_suites(context: ssl.SSLContext, tls: TlsConfig) -> None:
    import ssl  # noqa: PLC0415  # see ssl_context

    wanted = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
    if not wanted:
        return
    try:
        context.set_ciphers(":".join(wanted))
    except ssl.SSLError:
        raise WebConfigError(
            "tls_server_config.cipher_suites: none of the listed suites is available in this "
            "Python's OpenSSL"
        ) from None
    offered = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    for go_name, openssl_name in zip(tls.cipher_suites, wanted, strict=False):
        if openssl_name not in offered:
            raise WebConfigError(
                f"tls_server_config.cipher_suites: {go_name} is not available in this "
                "Python's OpenSSL (its security level or build leaves it out)"
            )


def _ssl_reason(exc: BaseException) -> str:
    import ssl  # noqa: PLC0415  # see ssl_context

    if isinstance(exc, ssl.SSLError):
        return (exc.reason or exc.strerror or str(exc)).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "no such file"
    return str(exc)


# --- client certificate checks --------------------------------------------------------------

def peer_sans(peercert: dict[str, Any] | None) -> tuple[str, ...]:
    """SAN values of a verified peer certificate as Go prints them (pure).

    DNS names, e-mail addresses, IP addresses (Go's canonical text: ``10.0.0.1``,
    ``2001:db8::1``) and URIs, as ``x509.Certificate`` exposes them.
    """
    if not peercert:
        return ()
    values = []
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "IP Address":
            with contextlib.suppress(ValueError):
                value = str(ipaddress.ip_address(value.strip()))  # noqa: PLW2901
        if kind in {"DNS", "email", "IP Address", "URI"}:
            values.append(value)
    return tuple(values)


def sans_check(allowed: tuple[str, ...] | None) -> Callable[[dict[str, Any] | None], bool] | None:
    """A predicate on the peer certificate for ``client_allowed_sans`` (``None``: no check)."""
    if allowed is None:
        return None
    wanted = frozenset(allowed)

    def check(peercert: dict[str, Any] | None) -> bool:
        return any(value in wanted for value in peer_sans(peercert))

    return check
