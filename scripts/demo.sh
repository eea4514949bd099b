#!/usr/bin/env bash
# The main demo: boots the QEMU test kernel, which loads modules one at a time
# with modload under real page permissions and reports each step on its
# console. x86_64 by default; `scripts/demo.sh --arch aarch64` for the other.
# (scripts/host-demo.sh runs a C program through `modload run` on the host.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh host cross kernel
cargo xtask run "$@"
