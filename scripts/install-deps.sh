#!/usr/bin/env bash
# Installs what modload's demo, tests and benchmarks need on a fresh Debian
# machine. Each package is installed only when missing, so a second run is
# quick and touches the network not at all.
#
# Usage: install-deps.sh [host] [cross] [kernel] [bench] [real] [debug]   (default: all)
#   host    gcc, g++, binutils, python3: the x86_64 host fixtures
#   cross   clang-22, lld-22, llvm-22 tools: AArch64 fixtures and the lld oracle
#   kernel  Debian's rustc-web/cargo-web/rust-web-src (also the AArch64 Rust
#           fixtures: core via -Zbuild-std) and QEMU for both arches
#   bench   llvm-22-dev (llvm-sys), hyperfine, valgrind, jq (scripts/bench-compare.sh)
#   real    the AArch64 GNU cross compilers, their libc and qemu-user:
#           `modload run` on AArch64 Linux under qemu-aarch64, and the
#           real-program harness (scripts/real-programs.sh --arch aarch64)
set -euo pipefail

groups=("$@")
((${#groups[@]})) || groups=(host cross kernel bench real debug)

have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Packages are installed in batches. A batch is one apt-get call; QEMU's two
# system packages each get their own, because asking for both at once makes
# apt refuse ("Resolve generated breaks") next to the image's backported
# qemu-utils.
batches=()
want() {
    local batch=()
    for pkg in "$@"; do installed "$pkg" || batch+=("$pkg"); done
    ((${#batch[@]})) && batches+=("${batch[*]}")
    return 0
}

for group in "${groups[@]}"; do
    case "$group" in
    host) want gcc g++ binutils python3 ;;
    cross) want clang-22 lld-22 llvm-22 ;;
    kernel)
        want rustc-web cargo-web rust-web-src lld-22
        want qemu-system-x86
        want qemu-system-arm
        ;;
    bench) want llvm-22-dev hyperfine valgrind jq zlib1g-dev libzstd-dev libxml2-dev ;;
    real) want gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user ;;
    # GDB on the host (the JIT interface of `modload run`) and through
    # QEMU's gdbstub for both kernels; perf for the perf map.
    debug) want gdb gdb-multiarch linux-perf ;;
    *)
        echo "install-deps: unknown group '$group'" >&2
        exit 2
        ;;
    esac
done

if ((${#batches[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${batches[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    for batch in "${batches[@]}"; do
        # shellcheck disable=SC2086 # a batch is a space-separated list
        apt-get install -y -qq --no-install-recommends $batch
    done
fi

if ! have cargo; then
    echo "install-deps: cargo is missing; install Rust (rustup) first" >&2
    exit 1
fi
