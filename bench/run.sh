#!/usr/bin/env bash
# One command for every benchmark: builds in release mode, measures, writes bench/RESULTS.md.
# Extra arguments go to the harness (e.g. --events 200000, --only remap).
set -euo pipefail
cd "$(dirname "$0")/.."
# --examples: the plugin scenarios run examples/plugin_tagger as an external plugin.
cargo build --release --workspace --bins --examples --quiet
# The yardstick every pipeline's speed is compared with (bench/speedlimit/PROVENANCE.md).
cargo build --release --quiet --locked --manifest-path bench/speedlimit/Cargo.toml --target-dir target/speedlimit
exec target/release/siemflow-bench "$@"
