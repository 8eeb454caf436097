"""Test certificates made at test time with the openssl command (nothing stored in the repo).

:func:`make_pki` writes a CA, a server certificate for ``localhost``/``127.0.0.1`` and client
certificates (one per SAN set, plus one from another CA) into a directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str, *, curve: str = "prime256v1") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-nodes",
         "-subj", f"/CN={name}", "-days", "2", "-keyout", str(key), "-out", str(cert),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_cert(directory: Path, name: str, ca: tuple[Path, Path], sans: str, *,
              key_type: str = "ec", usage: str = "serverAuth,clientAuth") -> tuple[Path, Path]:
    """A certificate signed by ``ca`` with ``sans`` (``DNS:x,IP:y,URI:z``): (cert, key)."""
    cert, key, csr = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr"
    newkey = ["-newkey", "rsa:2048"] if key_type == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    _run("req", *newkey, "-nodes", "-subj", f"/CN={name}", "-keyout", str(key),
         "-out", str(csr))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage={usage}\n"
                   "basicConstraints=CA:FALSE\n")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return cert, key


@dataclass(frozen=True)
class Pki:
    """Paths of one test PKI."""

    directory: Path
    ca: Path
    server: tuple[Path, Path]
    server_rsa: tuple[Path, Path]
    client: tuple[Path, Path]  # SANs DNS:scraper.example, IP:10.0.0.7, URI:spiffe://t/s
    other_client: tuple[Path, Path]  # SAN DNS:intruder.example
    stranger: tuple[Path, Path]  # signed by another CA, SAN DNS:scraper.example
    other_ca: Path


def make_pki(directory: Path) -> Pki:
    """Everything the TLS tests need, in ``directory``."""
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    return Pki(
        directory=directory,
        ca=ca[0],
        server=make_cert(directory, "server", ca, "DNS:localhost,IP:127.0.0.1"),
        server_rsa=make_cert(directory, "server-rsa", ca, "DNS:localhost,IP:127.0.0.1",
                             key_type="rsa"),
        client=make_cert(directory, "client", ca,
                         "DNS:scraper.example,IP:10.0.0.7,URI:spiffe://t/s"),
        other_client=make_cert(directory, "other-client", ca, "DNS:intruder.example"),
        stranger=make_cert(directory, "stranger", other, "DNS:scraper.example"),
        other_ca=other[0],
    )
