#!/usr/bin/env bash
# Regenerates the committed Python stubs of the kubelet pod-resources API from
# proto/podresources/v1/api.proto into src/gpu_exporter/kubernetes/_pb/.
#
# Usage: tools/gen_proto.sh [OUTPUT_ROOT]   (default: src; the stubs land in OUTPUT_ROOT/gpu_exporter/kubernetes/_pb)
# No .pyi: mypy skips the generated package (pyproject.toml), and a .pyi would be type-checked.
# Needs grpcio-tools (the version pinned in pyproject.toml); PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$out/gpu_exporter/kubernetes/_pb"
# The -I mapping places api.proto inside the Python package, so the generated gRPC module imports
# its messages as gpu_exporter.kubernetes._pb.api_pb2 rather than as a top-level module.
"$python" -m grpc_tools.protoc \
    -Igpu_exporter/kubernetes/_pb=proto/podresources/v1 \
    --python_out="$out" \
    gpu_exporter/kubernetes/_pb/api.proto
