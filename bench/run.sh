#!/usr/bin/env bash
# One command for every benchmark: builds in release mode, measures, writes bench/RESULTS.md.
# Extra arguments go to the harness (e.g. --events 200000, --only remap).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
exec target/release/siemflow-bench "$@"
