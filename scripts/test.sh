#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, integration and doc tests (the lld
# oracle among them), both QEMU test kernels, and a bounded fuzz run.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

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
