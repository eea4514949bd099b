#!/usr/bin/env bash
# Cross-builds the host tool (`modload`) for AArch64 Linux with Debian's
# rustc-web, std built from source (-Zbuild-std), linked by the cross gcc.
# The last line of output is the binary's absolute path, so callers can do
#   MODLOAD_AARCH64=$(scripts/build-cli-aarch64.sh | tail -n1)
# and run it with `qemu-aarch64 -L /usr/aarch64-linux-gnu "$MODLOAD_AARCH64" run ...`.
#
# Its own target directory (target/cross, or $MODLOAD_CROSS_TARGET_DIR) keeps
# it from ever invalidating or locking the host build in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh kernel real >&2

target=aarch64-unknown-linux-gnu
target_dir=${MODLOAD_CROSS_TARGET_DIR:-$PWD/target/cross}

RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_DIR="$target_dir" \
    /usr/bin/cargo build -q -p modload-cli --release --target "$target" \
    -Zbuild-std=std,panic_abort >&2

binary="$target_dir/$target/release/modload"
[ -x "$binary" ] || {
    echo "build-cli-aarch64: $binary was not built" >&2
    exit 1
}
echo "$binary"
