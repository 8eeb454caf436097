# syntax=docker/dockerfile:1
#
# gpu-exporter container image: a Python virtual environment on a slim Debian Python base.
# No DCGM and no CUDA: on a GPU host the NVIDIA container toolkit injects the driver's
# libnvidia-ml.so.1 (`docker run --gpus all -p 9400:9400 IMAGE`). The simulated NVML ships
# inside the package and is loaded only with `--simulate PROFILE`.
#
# Build arguments:
#   BASE_IMAGE   runtime base; needs python3 (>= 3.10) and nothing else.
#   BUILD_IMAGE  build stage base; must have the same Python at the same path as BASE_IMAGE,
#                plus gcc when building from source (the full python image has it).
#   WHEELS       empty (default): build the package from this source tree, fetching the build
#                and runtime dependencies from PyPI. Set to a directory of the build context
#                holding pre-built wheels (ours and every dependency) to build with no network:
#                  pip wheel . -w build/image/wheels
#                  podman build --network=none --build-arg WHEELS=build/image/wheels ...
#                (the base images need `python3 -m venv` to work: Debian's python3-venv).
#   DCGM_CLIENT  empty (default): the image holds no DCGM. Set to a directory of the build
#                context holding your DCGM client library (libdcgm.so.4, or .so.3, with its
#                soname links and anything `ldd` shows the base image lacks) to read
#                profiling fields of GPUs before Hopper from a running DCGM host engine
#                (-r / DCGM_REMOTE_HOSTENGINE_INFO, docs/dcgm.md). .dockerignore lets
#                `dcgm-client/` in:
#                  podman build --build-arg DCGM_CLIENT=dcgm-client ...
#                The build loads it through the exporter's own loader and fails if it
#                cannot. The files go to /opt/dcgm/lib, which is on LD_LIBRARY_PATH (empty by
#                default: a directory holding only a DCGM library can be mounted there).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
ARG BUILD_IMAGE=docker.io/library/python:3.11-bookworm

FROM ${BUILD_IMAGE} AS build
ARG WHEELS=""
ARG DCGM_CLIENT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . /src
# One virtual environment holds the exporter and its dependencies; pip itself is removed so
# the runtime image carries only what runs. The bytecode pip compiles stays (6 MB): it halves
# the exporter's import time at every start.
RUN python3 -m venv /opt/gpu-exporter \
    && if [ -n "${WHEELS}" ]; then \
           /opt/gpu-exporter/bin/pip install --no-index --find-links "/src/${WHEELS}" gpu-exporter; \
       else \
           /opt/gpu-exporter/bin/pip install /src; \
       fi \
    && /opt/gpu-exporter/bin/gpu-exporter --help > /dev/null \
    && /opt/gpu-exporter/bin/pip uninstall --yes pip setuptools \
    && mkdir -p /rootfs/etc/dcgm-exporter \
    && cp /src/counters/*.csv /rootfs/etc/dcgm-exporter/ \
    && mkdir -p /rootfs/opt/dcgm/lib \
    && if [ -n "${DCGM_CLIENT}" ]; then \
           cp -a "/src/${DCGM_CLIENT}/." /rootfs/opt/dcgm/lib/ \
           && LD_LIBRARY_PATH=/rootfs/opt/dcgm/lib /opt/gpu-exporter/bin/python3 -c \
              "from gpu_exporter.dcgm import Dcgm, load_library; Dcgm(load_library())"; \
       fi

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="gpu-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPUs, a drop-in for dcgm-exporter without DCGM" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/gpu-exporter /opt/gpu-exporter
# The counters files sit where dcgm-exporter keeps them, so upstream `-f` arguments work.
COPY --from=build /rootfs/etc/dcgm-exporter /etc/dcgm-exporter
# Empty unless built with DCGM_CLIENT (see above).
COPY --from=build /rootfs/opt/dcgm /opt/dcgm
# NVIDIA_* tell the container toolkit to mount the driver's management library (NVML) and all
# GPUs' device nodes: the exporter monitors every GPU of the node without requesting any.
ENV PATH=/opt/gpu-exporter/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/dcgm/lib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
# Root, as dcgm-exporter's images run: the kubelet's pod-resources socket belongs to root with
# mode 0755, and the GPU Operator runs the image it is pointed at with no runAsUser, so any
# other user would lose pod attribution there. Numeric, so a pod's securityContext can check
# or override it; docs/deployment.md shows how to run as a non-root user instead.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 9400
ENTRYPOINT ["/opt/gpu-exporter/bin/gpu-exporter"]
