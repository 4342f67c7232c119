#!/usr/bin/env bash
# Installs what the tests need and runs every test: the README's test command, and CI's.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
rustc --version

echo "== formatting"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== test dependencies (rsyslog)"
./scripts/test-deps.sh
echo "== tests"
cargo test --workspace --locked
