#!/usr/bin/env bash
# Installs what modload's demo and tests need on a fresh Debian machine.
# Each package is installed only when missing, so a second run is quick.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

have gcc || need_apt+=(gcc)
have g++ || need_apt+=(g++)
have readelf || need_apt+=(binutils)
have python3 || need_apt+=(python3)

if ((${#need_apt[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${need_apt[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! have cargo; then
    echo "install-deps: cargo is missing; install Rust (rustup) first" >&2
    exit 1
fi
