"""Kubernetes pod attribution from the kubelet pod-resources API.

Entry points: :mod:`gpu_exporter.kubernetes.integration` (``start_refresher`` and
``attribute``, used by the server) and :mod:`gpu_exporter.kubernetes.refresher` (``start``,
``running``, :class:`~gpu_exporter.kubernetes.refresher.Refresher`). This package module
imports nothing, so importing a pure submodule (device ids, pod index, attribution) does
not load grpc; only :mod:`gpu_exporter.kubernetes.podresources` does. See docs/kubernetes.md.
"""
