"""gpu-exporter: a Prometheus exporter for NVIDIA GPUs, a drop-in for dcgm-exporter."""

__version__ = "0.1.0"
"""The package version (pyproject.toml reads it from here; no metadata lookup at start)."""

__all__ = ["__version__"]
