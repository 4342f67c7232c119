#!/usr/bin/env bash
# Regenerates the checked-in code of proto/plugin.proto after a change to it:
#  - Rust (core/src/external/proto/siemflow.plugin.v1.rs) with proto/codegen (protox and
#    tonic-prost-build: no protoc binary needed);
#  - Python (plugins/python/siemflow_plugin/plugin_pb2*.py) with grpcio-tools, pinned to
#    the grpcio of scripts/test-requirements.txt so the stubs' version checks pass against
#    the pinned runtime (grpcio, protobuf), installed in a throwaway virtualenv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo run --quiet --manifest-path proto/codegen/Cargo.toml --target-dir "${CODEGEN_TARGET:-$root/proto/codegen/target}"

grpcio=$(sed -n 's/^grpcio==//p' scripts/test-requirements.txt)
protobuf=$(sed -n 's/^protobuf==//p' scripts/test-requirements.txt)
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "grpcio-tools==$grpcio" "protobuf==$protobuf"
out=plugins/python/siemflow_plugin
"$venv/bin/python" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" \
    --grpc_python_out="$out" proto/plugin.proto
# grpc_tools writes `import plugin_pb2`; inside the package it must be relative.
sed -i 's/^import plugin_pb2 as plugin__pb2$/from . import plugin_pb2 as plugin__pb2/' \
    "$out/plugin_pb2_grpc.py"
echo "regenerated: core/src/external/proto/siemflow.plugin.v1.rs, $out/plugin_pb2*.py"
