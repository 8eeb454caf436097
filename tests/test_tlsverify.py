"""The accept-all verify callback behind RequestClientCert / RequireAnyClientCert."""

from __future__ import annotations

import ssl

import pytest

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
