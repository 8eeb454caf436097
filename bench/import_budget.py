"""Memory budget per import: VmRSS of a fresh interpreter after each cumulative import.

Each row adds its imports to the rows above it, in a new interpreter (3 processes per row,
median), the way the exporter loads them: without OpenSSL (``ssl`` and ``_hashlib`` kept out,
as ``cli._without_ssl`` does for a run that makes no TLS connection), then the same with
OpenSSL, which a TLS listener or the Kubernetes API watch brings. Nothing here is timed.

Run: ``.venv/bin/python bench/import_budget.py``; prints a Markdown table for
bench/RESULTS.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

NO_OPENSSL = "import sys; sys.modules['ssl'] = None; sys.modules['_hashlib'] = None"

ROWS: tuple[tuple[str, str, str], ...] = (
    ("nothing (`python -c pass`)", "", "-"),
    ("`asyncio`, without OpenSSL", "import asyncio", "always"),
    ("+ `aiohttp.web`", "import aiohttp.web", "always"),
    ("+ `pynvml`", "import pynvml", "always"),
    ("+ `gpu_exporter.cli` and `gpu_exporter.server` (all a plain run imports)",
     "import gpu_exporter.cli, gpu_exporter.server", "always"),
    ("+ `yaml`, `gpu_exporter.simulator` and profile parsing",
     "import yaml, gpu_exporter.simulator.profiles", "only with `--simulate`"),
    ("+ `gpu_exporter.kubernetes.integration` (grpcio, protobuf)",
     "import gpu_exporter.kubernetes.integration", "only with `-k`"),
)
"""(row, its imports, when the exporter loads them)."""

WITH_OPENSSL: tuple[tuple[str, str, str], ...] = (
    ("`asyncio` with OpenSSL (`ssl`, `_hashlib`: libssl, libcrypto)", "import asyncio",
     "TLS listener or API watch"),
    ("+ `aiohttp.web`, `pynvml`, `gpu_exporter.cli` and `gpu_exporter.server`",
     "import aiohttp.web, pynvml, gpu_exporter.cli, gpu_exporter.server",
     "TLS listener or API watch"),
    ("+ `gpu_exporter.kubernetes.apiserver` (the API watch)",
     "import gpu_exporter.kubernetes.integration, gpu_exporter.kubernetes.apiserver",
     "`-k` with pod labels, UID, DRA or workloads"),
)

_RSS = ("print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])")


def rss_kib(code: str) -> int:
    """Median VmRSS (KiB) of 3 fresh interpreters running ``code``."""
    values = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", f"{code}\n{_RSS}"], capture_output=True,
                             text=True, check=True, timeout=60)
        values.append(int(out.stdout.split()[-1]))
    return int(statistics.median(values))


def table(rows: tuple[tuple[str, str, str], ...], prefix: str) -> list[str]:
    """One Markdown row per cumulative import."""
    lines = []
    code = prefix
    for name, imports, when in rows:
        code = f"{code}\n{imports}" if imports else code
        lines.append(f"| {name} | {rss_kib(code) / 1024:.1f} MiB | {when} |")
    return lines


NO_CA_BUNDLE = ("import os; os.environ['SSL_CERT_FILE'] = os.devnull; "
                "os.environ['SSL_CERT_DIR'] = os.devnull")
"""As ``cli._no_default_ca_bundle`` while the server's modules are imported: aiohttp's two
import-time client contexts read no CA bundle."""


def main() -> None:
    """Print both tables."""
    print("| Import | VmRSS | Loaded when |")
    print("|---|---|---|")
    for line in table(ROWS, NO_OPENSSL):
        print(line)
    for line in table(WITH_OPENSSL, NO_CA_BUNDLE):
        print(line)


if __name__ == "__main__":
    main()
