#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: rsyslog with its TLS driver,
# the real syslog receiver the syslog sink is tested against; and, in the project-local
# virtualenv .venv-test/, the Python packages of scripts/test-requirements.txt (the tansu
# Kafka broker and the confluent-kafka client of the kafka tests; the OpenTelemetry SDK and
# the OTLP peers of the opentelemetry tests). Idempotent and quiet when everything is
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh

# The Python peers.
ensure_venv .venv-test scripts/test-requirements.txt

# rsyslogd itself, and the gtls stream driver it loads for TLS listeners.
ensure_debian_packages rsyslog rsyslog-gnutls
