"""Hypothesis over web config documents: accepted and honoured, or refused with a message.

Documents are drawn from the format's own keys (right and misspelled, right and wrong values)
and from raw bytes; each is either refused with WebConfigError (never another exception) or
accepted, in which case the TLS context built from it does what the document says.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.certs import Pki, make_pki

from gpu_exporter.webconfig import (
    CIPHER_SUITES,
    CURVES,
    HEADERS,
    TLS13_SUITES,
    TLS_VERSIONS,
    VERIFYING,
    WebConfigError,
    load_web_config,
    parse_web_config,
    ssl_context,
)

HASH = "$2b$04$0MOvBuAhrbvmjzAAiWzx6uT1V8Ptt0mIiEcTsVcY.sdz9m2.2RJvG"

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=8),
                  st.lists(st.text(max_size=4), max_size=2), st.just({}))


def _key(names: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(names), st.sampled_from(names).map(lambda k: k[:-1]),
                     st.sampled_from(names).map(str.upper), st.text(max_size=6))


def _value(key: str) -> st.SearchStrategy[Any]:
    good: dict[str, st.SearchStrategy[Any]] = {
        "cert_file": st.sampled_from(["server.crt", "server.key", "missing.crt", "/dev/zero"]),
        "key_file": st.sampled_from(["server.key", "server.crt", "client.key"]),
        "client_ca_file": st.sampled_from(["ca.crt", "server.key", "other-ca.crt"]),
        "client_auth_type": st.sampled_from(["NoClientCert", "RequestClientCert",
                                             "RequireAnyClientCert", "VerifyClientCertIfGiven",
                                             "RequireAndVerifyClientCert", "", "Bogus"]),
        "client_allowed_sans": st.lists(st.sampled_from(["scraper.example", "10.0.0.7", "x"]),
                                        max_size=2),
        "min_version": st.sampled_from([*TLS_VERSIONS, "TLS9", ""]),
        "max_version": st.sampled_from([*TLS_VERSIONS, "TLS14"]),
        "cipher_suites": st.lists(st.sampled_from([*CIPHER_SUITES, *TLS13_SUITES, "RC4"]),
                                  max_size=3),
        "curve_preferences": st.lists(st.sampled_from([*CURVES, "P-256"]), max_size=2),
        "prefer_server_cipher_suites": st.booleans(),
        "http2": st.booleans(),
        "interval": st.sampled_from(["1s", "0", "500ms", "x", 3]),
        "burst": st.integers(-1, 5),
    }
    return st.one_of(good.get(key, _JUNK), _JUNK) if key in good else _JUNK


@st.composite
def _section(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    keys = draw(st.lists(_key(names), max_size=len(names), unique=True))
    return {k: draw(_value(k)) for k in keys}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        tls = draw(_section(["cert_file", "key_file", "client_auth_type", "client_ca_file",
                             "client_allowed_sans", "min_version", "max_version",
                             "cipher_suites", "curve_preferences",
                             "prefer_server_cipher_suites"]))
        if draw(st.booleans()):
            tls.update({"cert_file": "server.crt", "key_file": "server.key"})
        doc["tls_server_config"] = tls
    if draw(st.booleans()):
        headers = {draw(_key(list(HEADERS))): draw(st.one_of(
            st.sampled_from(["deny", "nosniff", "sameorigin", "x\r\ny", ""]), _JUNK))
            for _ in range(draw(st.integers(0, 3)))}
        doc["http_server_config"] = {"headers": headers, **draw(_section(["http2"]))}
    if draw(st.booleans()):
        doc["basic_auth_users"] = draw(st.one_of(
            st.dictionaries(st.sampled_from(["p", "a:b", ""]),
                            st.one_of(st.just(HASH), _JUNK), max_size=2), _JUNK))
    if draw(st.booleans()):
        doc["rate_limit"] = draw(_section(["interval", "burst"]))
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.text(max_size=6))] = draw(_JUNK)
    return doc


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _honoured(context: ssl.SSLContext, tls: dict[str, Any]) -> None:
    policy = tls.get("client_auth_type") or "NoClientCert"
    assert context.verify_mode == VERIFYING.get(policy, ssl.CERT_NONE)
    assert context.minimum_version == TLS_VERSIONS[tls.get("min_version") or "TLS12"]
    assert context.maximum_version == TLS_VERSIONS[tls.get("max_version") or "TLS13"]
    wanted = {CIPHER_SUITES[s] for s in tls.get("cipher_suites") or () if s in CIPHER_SUITES}
    if wanted:
        tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
        assert tls12 == wanted
    prefer = tls.get("prefer_server_cipher_suites", True)
    assert bool(context.options & ssl.OP_CIPHER_SERVER_PREFERENCE) == prefer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents())
def test_documents_are_honoured_or_refused(pki: Pki, doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc)
    refused = ""
    try:
        web = parse_web_config(text, source="w.yml", base=pki.directory)
        context = ssl_context(web.tls) if web.tls is not None else None
    except WebConfigError as exc:
        refused = str(exc)
    if refused:
        assert refused.startswith("w.yml: ") or refused.startswith("tls_server_config.")
        return
    tls = doc.get("tls_server_config") or {}
    if context is None:
        assert not any(v not in (None, "", []) for v in tls.values())
    else:
        _honoured(context, tls)
    expected = {k: v for k, v in ((doc.get("http_server_config") or {}).get("headers") or {})
                .items() if v}
    assert dict(web.headers) == expected
    users = doc.get("basic_auth_users") or {}
    assert dict(web.basic_auth_users) == users


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.sampled_from([10, 900, 20000]).map(lambda n: b"a: " + b"[" * n + b"]" * n),
    st.sampled_from([5, 300]).map(
        lambda n: "".join(f"{' ' * i}k{i}:\n" for i in range(n)).encode()),
    st.sampled_from([b"&a [*a]", b"a: &x {b: *x}", b"!!python/object:os.system {}",
                     b"tls_server_config: !!binary AAAA", b"\xff\xfe", b"\x00"]),
))
def test_any_bytes_are_accepted_or_refused_with_a_message(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "web.yml"
    path.write_bytes(data)
    refused = ""
    try:
        load_web_config(path)
    except WebConfigError as exc:
        refused = str(exc)
    assert not refused or str(path) in refused
