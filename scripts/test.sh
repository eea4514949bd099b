#!/usr/bin/env bash
# Runs every test: formatting, lints, packaging, unit, integration and doc
# tests (the lld oracle among them), both QEMU test kernels, the examples, real programs (Lua, zlib, lz4,
# zstd, bzip2, SQLite, C++, atomics) through `modload run` on x86_64 and on
# AArch64 under qemu-user, and a bounded fuzz run.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# A full run leaves about 2.7 GiB of build output in target/. Say so up front
# when the disk is short, rather than let a compiler fail midway with ENOSPC.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((4 * 1024 * 1024)) ]; then
    echo "warning: $((free_kib / 1024)) MiB free here; a full run needs about 2.7 GiB" >&2
fi

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "== packaging: modload and modload-platform package, and pass their tests as packaged"
scripts/package.sh
echo "== cargo test"
cargo test --workspace --all-features
echo "== QEMU test kernels (x86_64, aarch64)"
cargo xtask test
echo "== GDB on the QEMU kernels through the gdbstub (x86_64, aarch64)"
cargo xtask debug-test
echo "== examples: the host program and the minimal kernels (examples/README.md)"
scripts/examples.sh
echo "== real programs through modload run, x86_64 (tests/real/README.md)"
scripts/real-programs.sh
echo "== modload run on AArch64 Linux under qemu-aarch64: outline atomics, page sizes"
scripts/aarch64-host.sh
echo "== real programs through modload run, AArch64 under qemu-aarch64"
aarch64_cli="$(scripts/build-cli-aarch64.sh | tail -n 1)"
test -x "$aarch64_cli" || { echo "no AArch64 modload CLI at '$aarch64_cli'" >&2; exit 1; }
MODLOAD_AARCH64="$aarch64_cli" scripts/real-programs.sh --arch aarch64
echo "== fuzzing, 40 s per target (a longer campaign: scripts/fuzz.sh 3600)"
scripts/fuzz.sh 40
