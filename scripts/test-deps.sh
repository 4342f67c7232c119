#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: rsyslog with its TLS driver,
# the real syslog receiver the syslog sink is tested against; and, in the project-local
# virtualenv .venv-test/, the Python packages of scripts/test-requirements.txt (the tansu
# Kafka broker and the confluent-kafka client of the kafka tests; the OpenTelemetry SDK and
# the OTLP peers of the opentelemetry tests). Idempotent and quiet when everything is
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python peers: a venv of our own, so nothing touches the machine's Python. A stamp
# holding the requirements' text skips pip when they have not changed.
venv=.venv-test
requirements=scripts/test-requirements.txt
if ! cmp -s "$requirements" "$venv/.installed" 2>/dev/null; then
    echo "== installing Python test peers into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.installed"
fi

# rsyslogd itself, and the gtls stream driver it loads for TLS listeners.
packages=(rsyslog rsyslog-gnutls)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: ${missing[*]} missing and apt-get is not available; install them by hand" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

echo "== installing test dependencies: ${missing[*]}"
# A fresh machine has no package lists yet; refresh them only when the install cannot
# find the packages, so a warm machine never touches the network.
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

