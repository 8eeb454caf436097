"""The accept-all verify callback behind RequestClientCert / RequireAnyClientCert."""

from __future__ import annotations

import ctypes
import ssl
import sys
import types

import pytest

from gpu_exporter import tlsverify
from gpu_exporter.tlsverify import UnverifiedClientCerts, UnverifiedError, libssl_path

MAPS = (
    "7f00-7f01 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
    "7f01-7f02 r-xp 00001000 08:01 1 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
    "7f02-7f03 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"
    "7f03-7f04 rw-p 00000000 00:00 0 \n"
)


def test_libssl_path_is_read_from_the_maps() -> None:
    assert str(libssl_path(MAPS)) == "/usr/lib/x86_64-linux-gnu/libssl.so.3"


@pytest.mark.parametrize("maps", [
    "7f02-7f03 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n",
    MAPS + "7f05-7f06 r--p 00000000 08:01 3 /opt/other/libssl.so.1.1\n",
])
def test_no_or_two_libssl_is_refused(maps: str) -> None:
    with pytest.raises(UnverifiedError, match="expected one libssl"):
        libssl_path(maps)


@pytest.mark.parametrize(("require", "mode"), [(True, ssl.CERT_REQUIRED),
                                                (False, ssl.CERT_OPTIONAL)])
def test_apply_sets_the_mode_python_then_reports(require: bool, mode: ssl.VerifyMode) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    UnverifiedClientCerts().apply(context, require=require)
    assert context.verify_mode == mode


def test_openssl_functions_are_those_of_the_mapped_libssl() -> None:
    lib = ctypes.CDLL(sys.modules["_ssl"].__file__)
    address = ctypes.cast(lib.SSL_CTX_set_verify, ctypes.c_void_p).value
    assert tlsverify._library_of(address).name.startswith("libssl.so")


def test_an_address_in_no_library_is_refused() -> None:
    with pytest.raises(UnverifiedError, match="cannot tell which library"):
        tlsverify._library_of(8)


def test_ssl_built_into_the_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "_ssl", types.ModuleType("_ssl"))
    with pytest.raises(UnverifiedError, match="built into the interpreter"):
        UnverifiedClientCerts()


def test_another_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.implementation, "name", "pypy")
    with pytest.raises(UnverifiedError, match="pypy is not CPython"):
        UnverifiedClientCerts()
