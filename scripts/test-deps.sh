#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: rsyslog with its TLS driver,
# the real syslog receiver the syslog sink is tested against. Idempotent and quiet when
# everything is already there.
set -euo pipefail

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

