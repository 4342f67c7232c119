#!/usr/bin/env bash
# Installs what the tests need and runs every test: the README's test command, and CI's.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
rustc --version

echo "== formatting"
cargo fmt --all -- --check

echo "== test dependencies (rsyslog; tansu and confluent-kafka in .venv-test)"
./scripts/test-deps.sh

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== deployment: manifests and Helm chart (kubernetes-validate, checkov), container image (umoci)"
./scripts/deploy-check.sh
./scripts/image.sh
