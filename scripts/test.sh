#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, integration and doc tests (the lld
# oracle among them), both QEMU test kernels, and a bounded fuzz run.
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
echo "== cargo test"
cargo test --workspace --all-features
echo "== QEMU test kernels (x86_64, aarch64)"
cargo xtask test
echo "== fuzzing, 60 s per target (a longer campaign: scripts/fuzz.sh 3600)"
scripts/fuzz.sh 60
