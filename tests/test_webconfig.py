"""The web config format: every key path, typos, types, inconsistent combinations, files.

Parsing is pure (parse_web_config); ssl_context reads real PEM files made with openssl at
test time; load_web_config reads files with a size cap and no blocking on special files.
"""

from __future__ import annotations

import copy
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.certs import Pki, make_pki

from gpu_exporter.webconfig import (
    CIPHER_SUITES,
    WebConfigError,
    load_web_config,
    parse_duration,
    parse_web_config,
    peer_sans,
    ssl_context,
)

HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"

FULL: dict[str, Any] = {
    "tls_server_config": {
        "cert_file": "server.crt",
        "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "ca.crt",
        "client_allowed_sans": ["scraper.example"],
        "min_version": "TLS12",
        "max_version": "TLS13",
        "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
        "curve_preferences": ["CurveP256"],
        "prefer_server_cipher_suites": True,
    },
    "http_server_config": {
        "http2": True,
        "headers": {
            "Content-Security-Policy": "default-src 'none'",
            "X-Frame-Options": "deny",
            "X-Content-Type-Options": "nosniff",
            "X-XSS-Protection": "1; mode=block",
            "Strict-Transport-Security": "max-age=31536000",
        },
    },
    "basic_auth_users": {"prometheus": HASH},
    "rate_limit": {"interval": "1s", "burst": 50},
}


def _paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the format in FULL (user names are data, not keys)."""
    result = []
    for key, value in doc.items():
        path = (*prefix, key)
        result.append(path)
        if isinstance(value, dict) and key != "basic_auth_users":
            result.extend(_paths(value, path))
    return result


KEY_PATHS = _paths(FULL)
INLINE_KEYS = [("tls_server_config", k) for k in ("cert", "key", "client_ca")]


def _typos(key: str) -> list[str]:
    return [key[:-1], key + "s", key.swapcase()[:1] + key[1:] if key[0].isalpha() else "_" + key]


def _with(doc: dict[str, Any], path: tuple[str, ...], *, rename: str | None = None,
          value: object = ...) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    if rename is not None:
        node[rename] = node.pop(path[-1])
    if value is not ...:
        node[path[-1]] = value
    return out


def _parse(doc: object, base: Path = Path("/etc/x")) -> Any:
    return parse_web_config(yaml.safe_dump(doc), source="web.yml", base=base)


def _error(doc: object) -> str:
    with pytest.raises(WebConfigError) as info:
        _parse(doc)
    return str(info.value)


def test_the_full_document_is_accepted_with_every_setting() -> None:
    web = _parse(FULL)
    assert web.tls is not None
    assert web.tls.cert_file == Path("/etc/x/server.crt")
    assert web.tls.client_ca_file == Path("/etc/x/ca.crt")
    assert web.tls.client_allowed_sans == ("scraper.example",)
    assert web.tls.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)
    assert web.tls.curve_preferences == ("CurveP256",)
    assert len(web.headers) == 5
    assert web.basic_auth_users == (("prometheus", HASH),)
    assert web.rate_limit is not None
    assert (web.rate_limit.interval, web.rate_limit.burst) == (1.0, 50)
    assert HASH not in repr(web)  # secrets stay out of reprs (and so out of logs)


@pytest.mark.parametrize("path", KEY_PATHS + INLINE_KEYS, ids=".".join)
def test_every_misspelled_key_is_refused_naming_its_path(path: tuple[str, ...]) -> None:
    doc = FULL
    if path in INLINE_KEYS:
        doc = _with(FULL, ("tls_server_config", f"{path[-1]}_file"), rename=path[-1])
    for typo in _typos(path[-1]):
        message = _error(_with(doc, path, rename=typo))
        where = ".".join((*path[:-1], typo))
        assert (f"web.yml: {where}: unknown key" in message
                or f"web.yml: {typo}: unknown key" in message), message


@pytest.mark.parametrize("path", KEY_PATHS, ids=".".join)
def test_every_key_with_a_value_of_the_wrong_type_is_refused(path: tuple[str, ...]) -> None:
    current: Any = FULL
    for key in path:
        current = current[key]
    wrong: object = ["a", "b"] if not isinstance(current, list) else "text"
    if isinstance(current, dict) and path[-1] != "basic_auth_users":
        wrong = ["a"]
    message = _error(_with(FULL, path, value=wrong))
    assert message.startswith("web.yml: ")
    assert path[-1] in message or ".".join(path) in message, message


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"client_auth_type": "RequireAndVerifyClientCert"},
         "RequireAndVerifyClientCert needs client_ca_file"),
        ({"client_auth_type": "VerifyClientCertIfGiven"},
         "VerifyClientCertIfGiven needs client_ca_file"),
        ({"client_ca_file": "ca.crt"}, "a client CA is set but client_auth_type is NoClientCert"),
        ({"client_ca_file": "ca.crt", "client_auth_type": "NoClientCert"},
         "a client CA is set"),
        ({"client_auth_type": "RequireAnyClientCert", "client_ca_file": "ca.crt"},
         "no client certificate would be checked"),
        ({"client_auth_type": "RequestClientCert", "client_allowed_sans": ["a"]},
         "client_allowed_sans: needs verified client"),
        ({"client_auth_type": "requireandverifyclientcert", "client_ca_file": "ca.crt"},
         "client_auth_type: expected one of"),
        ({"client_allowed_sans": ["a"]}, "client_allowed_sans: needs verified client"),
        ({"client_allowed_sans": [], "client_auth_type": "RequireAndVerifyClientCert",
          "client_ca_file": "ca.crt"}, "empty list: no client could connect"),
        ({"min_version": "TLS13", "max_version": "TLS12"},
         "min_version TLS13 is above max_version TLS12"),
        ({"min_version": "TLS10"}, "TLS10 cannot be honoured"),
        ({"max_version": "TLS11"}, "TLS11 cannot be honoured"),
        ({"min_version": "TLS9"}, "min_version: expected one of"),
        ({"cipher_suites": ["TLS_ECDHE_RSA_WITH_RC4_128_SHA"]}, "unknown cipher suite"),
        ({"cipher_suites": ["ECDHE-RSA-AES128-GCM-SHA256"]}, "expected Go names"),
        ({"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}, "lists only TLS 1.3 suites"),
        ({"curve_preferences": ["P-256"]}, "unknown curve 'P-256'"),
        ({"curve_preferences": ["X25519", "CurveP256"]}, "one curve only"),
        ({"cert": "PEM"}, "set cert or cert_file, not both"),
        ({"client_ca": "PEM", "client_ca_file": "ca.crt",
          "client_auth_type": "RequireAndVerifyClientCert"}, "client_ca or client_ca_file"),
        ({"prefer_server_cipher_suites": "yes please"}, "expected true or false"),
    ],
)
def test_inconsistent_tls_settings_are_refused(tls: dict[str, Any], message: str) -> None:
    doc = {"tls_server_config": {"cert_file": "c", "key_file": "k", **tls}}
    assert message in _error(doc)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"tls_server_config": {"key_file": "k"}}, "missing one of cert or cert_file"),
        ({"tls_server_config": {"cert_file": "c"}}, "missing one of key or key_file"),
        ({"tls_server_config": {"min_version": "TLS13"}}, "given but no certificate"),
        ({"tls_server_config": {"client_allowed_sans": ["a"]}}, "given but no certificate"),
        ({"http_server_config": {"headers": {"X-Frame-Options": ["deny", "sameorigin"]}}},
         "X-Frame-Options: expected text, got a list"),
        ({"http_server_config": {"headers": {"Content-Security-Policy": None}}},
         "expected text, got nothing (null)"),
        ({"http_server_config": {"headers": {"X-XSS-Protection": "1\r\nSet-Cookie: a=b"}}},
         "control characters"),
        ({"http_server_config": {"headers": {"Strict-Transport-Security": "a\nb"}}},
         "control characters"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
         "expected one of deny, sameorigin"),
        ({"http_server_config": {"headers": {"X-Content-Type-Options": "sniff"}}},
         "expected one of nosniff"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "Server: unknown key"),
        ({"basic_auth_users": {"u": "plain-text-password"}}, "basic_auth_users.u: not a bcrypt"),
        ({"basic_auth_users": {"u:x": HASH}}, "':' and control characters"),
        ({"basic_auth_users": {"u": None}}, "expected a bcrypt hash as text"),
        ({"basic_auth_users": {1: HASH}}, "user name 1 is not text"),
        ({"basic_auth_users": ["u"]}, "basic_auth_users: expected a mapping"),
        ({"basic_auth_users": {"u": "$2y$03$" + "a" * 53}}, "cost 03 outside 4-31"),
        ({"rate_limit": {"interval": "1s", "burst": 0}}, "no request could ever be served"),
        ({"rate_limit": {"interval": "soon", "burst": 1}}, "not a duration"),
        ({"rate_limit": {"interval": 5, "burst": 1}}, "expected a duration"),
        ({"http_server_config": {"http2": "no"}}, "http2: expected true or false"),
        ([1, 2], "web.yml: expected a mapping, got a list"),
        ("just text", "web.yml: expected a mapping, got text"),
    ],
)
def test_other_bad_documents_are_refused(doc: object, message: str) -> None:
    assert message in _error(doc)


def test_secrets_never_appear_in_messages() -> None:
    message = _error({"basic_auth_users": {"u": "hunter2-plaintext"}})
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [\n", "web.yml:2: not valid YAML"),
        ("tls_server_config: {}\ntls_server_config: {}\n", "duplicate key 'tls_server_config'"),
        ("basic_auth_users:\n  u: x\n  u: y\n", "web.yml:3: not valid YAML: duplicate key 'u'"),
        ("[" * 20000 + "]" * 20000, "nested too deeply"),
        ("? [a]\n: b\n", "a mapping key must be a plain value"),
        ("", None),
        ("# only a comment\n", None),
        ("tls_server_config:\nhttp_server_config:\n", None),
    ],
)
def test_yaml_level_problems(text: str, message: str | None) -> None:
    if message is None:
        web = parse_web_config(text, source="web.yml", base=Path())
        assert web.tls is None
        assert web.basic_auth_users == ()
        return
    with pytest.raises(WebConfigError) as info:
        parse_web_config(text, source="web.yml", base=Path())
    assert message in str(info.value)


def test_durations() -> None:
    assert parse_duration("1m30s", "x") == 90.0
    assert parse_duration("500ms", "x") == 0.5
    assert parse_duration("0", "x") == 0.0
    assert parse_duration("1.5h", "x") == 5400.0
    with pytest.raises(WebConfigError):
        parse_duration("1 s", "x")


# --- files ---------------------------------------------------------------------------------

def test_special_and_bad_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    cases = {
        Path("/dev/zero"): "cannot read: not a regular file (a character device)",
        fifo: "cannot read: not a regular file (a FIFO)",
        tmp_path: "cannot read: not a regular file (a directory)",
        tmp_path / "missing.yml": "cannot read: No such file or directory",
    }
    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * (2 << 20))
    cases[big] = "cannot read: larger than 1048576 bytes"
    latin = tmp_path / "latin.yml"
    latin.write_bytes(b"http_server_config:\n  headers:\n    X-XSS-Protection: caf\xe9\n")
    cases[latin] = "not UTF-8 text (byte 0xe9 at offset 56)"
    for path, message in cases.items():
        with pytest.raises(WebConfigError) as info:
            load_web_config(path)
        assert str(path) in str(info.value)
        assert message in str(info.value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki: Pki, **extra: object) -> Any:
    doc = {"tls_server_config": {"cert_file": str(pki.server[0]),
                                 "key_file": str(pki.server[1]), **extra}}
    web = _parse(doc, base=pki.directory)
    assert web.tls is not None
    return web.tls


def test_context_honours_every_setting(pki: Pki) -> None:
    context = ssl_context(_tls(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt",
        min_version="TLS13", max_version="TLS13", prefer_server_cipher_suites=False,
    ))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    optional = ssl_context(_tls(pki, client_auth_type="VerifyClientCertIfGiven",
                                client_ca_file="ca.crt"))
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    assert optional.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    plain = ssl_context(_tls(pki))
    assert plain.verify_mode == ssl.CERT_NONE
    suites = ssl_context(_tls(pki, cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                                                  "TLS_AES_128_GCM_SHA256"]))
    tls12 = {c["name"] for c in suites.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert tls12 == {"ECDHE-ECDSA-AES256-GCM-SHA384"}


def test_every_go_cipher_suite_name_maps_to_an_openssl_suite(pki: Pki) -> None:
    for name in CIPHER_SUITES:
        context = ssl_context(_tls(pki, cipher_suites=[name]))
        assert len([c for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]) == 1, name


def test_inline_pem_is_loaded(pki: Pki) -> None:
    web = _parse({"tls_server_config": {
        "cert": pki.server[0].read_text(), "key": pki.server[1].read_text(),
        "client_ca": pki.ca.read_text(), "client_auth_type": "RequireAndVerifyClientCert",
    }})
    assert web.tls is not None
    assert web.tls.key is not None
    assert "PRIVATE" not in repr(web)
    assert ssl_context(web.tls).verify_mode == ssl.CERT_REQUIRED


def test_unusable_pem_files_are_named_with_the_problem(pki: Pki, tmp_path: Path) -> None:
    other_key = pki.other_client[1]
    encrypted = tmp_path / "enc.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                         "-----END ENCRYPTED PRIVATE KEY-----\n")
    empty_ca = tmp_path / "empty-ca.crt"
    empty_ca.write_text("not a certificate\n")
    cases: list[tuple[dict[str, object], str]] = [
        ({"cert_file": str(tmp_path / "nope.crt")},
         f"tls_server_config.cert_file: {tmp_path / 'nope.crt'}: cannot read: No such file"),
        ({"cert_file": str(pki.server[1]), "key_file": str(pki.server[0])},
         "holds a private key, not a certificate: are cert_file and key_file swapped?"),
        ({"key_file": str(other_key)},
         f"tls_server_config.key_file ({other_key}): the private key does not match the "
         f"certificate in tls_server_config.cert_file ({pki.server[0]})"),
        ({"key_file": str(encrypted)}, "the private key is encrypted"),
        ({"key_file": "/dev/zero"}, "not a regular file (a character device)"),
        ({"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(empty_ca)},
         f"tls_server_config.client_ca_file ({empty_ca}): no PEM certificate found"),
    ]
    for extra, message in cases:
        tls = _tls(pki, **extra)
        with pytest.raises(WebConfigError) as info:
            ssl_context(tls)
        assert message in str(info.value), (extra, str(info.value))


def test_peer_sans_match_go_spelling() -> None:
    cert = {"subjectAltName": (("DNS", "a.example"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"),
                               ("IP Address", "10.0.0.7"), ("URI", "spiffe://t/s"),
                               ("email", "ops@example.com"), ("DirName", "ignored"))}
    assert peer_sans(cert) == ("a.example", "2001:db8::1", "10.0.0.7", "spiffe://t/s",
                               "ops@example.com")
    assert peer_sans(None) == ()
