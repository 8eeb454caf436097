"""gpu-exporter: a Prometheus exporter for NVIDIA GPUs, a drop-in for dcgm-exporter."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpu-exporter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
