"""Collectors: one per file, each registered in :mod:`gpu_exporter.collectors.registry`."""
