"""Client certificates asked for, never verified: ``RequestClientCert``, ``RequireAnyClientCert``.

Python's :mod:`ssl` verifies every client certificate it asks for: it has no verify callback.
The exporter-toolkit's two unverified policies need exactly that callback, so this module (the
one that talks to OpenSSL through ctypes) installs an accept-all callback on the OpenSSL
``SSL_CTX`` behind an :class:`ssl.SSLContext`, on the very ``libssl`` that Python's ``_ssl``
module is linked to: the OpenSSL functions are looked up through ``_ssl``'s own handle (so the
dynamic linker resolves them as it did for ``_ssl``), and they must lie in the one ``libssl``
mapped into the process (``/proc/self/maps``).

It fails closed: before touching anything it checks that the pointer it found is the context's
``SSL_CTX`` by setting each verify mode through Python and reading it back through OpenSSL, and
after installing the callback it reads mode and callback back again. Any mismatch, an
interpreter other than CPython, a missing or second ``libssl`` (a statically linked ``_ssl``),
functions resolved elsewhere or a missing symbol raises :class:`UnverifiedError`, and the web
config is then refused at start; nothing falls back to a weaker policy.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import sys
from pathlib import Path

SSL_VERIFY_NONE = 0
SSL_VERIFY_PEER = 1
SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 2
"""OpenSSL's verify mode bits (``openssl/ssl.h``)."""

_PYTHON_MODES = ((ssl.CERT_NONE, SSL_VERIFY_NONE), (ssl.CERT_OPTIONAL, SSL_VERIFY_PEER),
                 (ssl.CERT_REQUIRED, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT))
"""What CPython's ``verify_mode`` setter gives OpenSSL for a server context."""

VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
"""``int (*)(int preverify_ok, X509_STORE_CTX *)``."""


class UnverifiedError(Exception):
    """The accept-all verify callback cannot be installed safely in this Python."""


def _accept_any(preverify_ok: int, store: int | None) -> int:  # noqa: ARG001
    return 1


ACCEPT_ANY = VerifyCallback(_accept_any)
"""The callback OpenSSL calls for each certificate of the chain: accept it. A constant that
lives as long as the process, so no context can outlive it."""


def libssl_path(maps: str) -> Path:
    """The ``libssl`` mapped into this process (``maps``: text of ``/proc/self/maps``)."""
    paths = {line.split(None, 5)[5].strip() for line in maps.splitlines()
             if len(line.split(None, 5)) == 6 and "/libssl.so" in line}
    if len(paths) != 1:
        found = ", ".join(sorted(paths)) or "none"
        raise UnverifiedError(f"expected one libssl mapped by Python's ssl module, found {found}")
    return Path(paths.pop())


class _DlInfo(ctypes.Structure):
    _fields_ = (("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p))


def _library_of(address: int | None) -> Path:
    """The file of the shared object that holds the function at ``address`` (``dladdr``)."""
    dladdr = ctypes.CDLL(None).dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        raise UnverifiedError("cannot tell which library holds OpenSSL's functions")
    return Path(os.fsdecode(info.dli_fname))


class UnverifiedClientCerts:
    """Installs the accept-all verify callback on server contexts."""

    def __init__(self) -> None:
        if sys.implementation.name != "cpython":
            raise UnverifiedError(f"{sys.implementation.name} is not CPython")
        module = getattr(sys.modules.get("_ssl"), "__file__", None)  # ssl's C module
        if module is None:
            raise UnverifiedError("Python's _ssl module is built into the interpreter")
        try:
            mapped = libssl_path(Path("/proc/self/maps").read_text())
            lib = ctypes.CDLL(module)  # already loaded: its handle, its dependencies
            self._set_verify = lib.SSL_CTX_set_verify
            self._get_mode = lib.SSL_CTX_get_verify_mode
            self._get_callback = lib.SSL_CTX_get_verify_callback
        except (OSError, AttributeError) as exc:
            raise UnverifiedError(f"cannot use OpenSSL directly: {exc}") from None
        for function in (self._set_verify, self._get_mode, self._get_callback):
            found = _library_of(ctypes.cast(function, ctypes.c_void_p).value)
            if found.resolve() != mapped.resolve():
                raise UnverifiedError(f"OpenSSL's functions come from {found}, not {mapped}")
        self._set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, VerifyCallback]
        self._set_verify.restype = None
        self._get_mode.argtypes = [ctypes.c_void_p]
        self._get_mode.restype = ctypes.c_int
        self._get_callback.argtypes = [ctypes.c_void_p]
        self._get_callback.restype = ctypes.c_void_p

    def _ssl_ctx(self, context: ssl.SSLContext) -> int:
        """The ``SSL_CTX *`` of ``context`` (CPython: the field after the object header)."""
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if not pointer:
            raise UnverifiedError("the SSL context has no OpenSSL context")
        for python_mode, openssl_mode in _PYTHON_MODES:
            context.verify_mode = python_mode
            if self._get_mode(pointer) != openssl_mode:
                raise UnverifiedError("OpenSSL's context does not follow Python's verify mode")
        return pointer

    def apply(self, context: ssl.SSLContext, *, require: bool) -> None:
        """Ask ``context``'s clients for a certificate (required if ``require``); never verify."""
        pointer = self._ssl_ctx(context)
        mode = SSL_VERIFY_PEER | (SSL_VERIFY_FAIL_IF_NO_PEER_CERT if require else 0)
        self._set_verify(pointer, mode, ACCEPT_ANY)
        installed = ctypes.cast(ACCEPT_ANY, ctypes.c_void_p).value
        if self._get_mode(pointer) != mode or self._get_callback(pointer) != installed:
            raise UnverifiedError("the verify callback did not take")
