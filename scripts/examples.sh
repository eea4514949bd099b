#!/usr/bin/env bash
# Builds and runs the three examples in examples/ and checks their output
# line by line: the host example (two chained C modules in this process),
# and the minimal x86-64 and AArch64 kernels under QEMU.
#
# Usage: scripts/examples.sh [host] [kernel-x86_64] [kernel-aarch64]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

examples=("$@")
((${#examples[@]})) || examples=(host kernel-x86_64 kernel-aarch64)

# gcc (cc) for the host example; clang-22 and ld.lld-22, Debian's rustc-web
# with its library source and QEMU for the kernels.
scripts/install-deps.sh host cross kernel

# Debian's cargo and rustc for the bare-metal kernels (their .cargo/config.toml
# asks for -Zbuild-std), clear of anything an outer cargo or rustup set.
bare_cargo=(
    env -u RUSTFLAGS -u RUSTDOCFLAGS -u RUSTC_WRAPPER -u CARGO_BUILD_TARGET
    -u CARGO_ENCODED_RUSTFLAGS -u RUSTUP_TOOLCHAIN
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo
)

failed=0
# check NAME EXPECTED_STATUS EXPECTED_OUTPUT -- COMMAND...: runs the example
# (at most 120 s), and compares its exit status and its whole standard output.
check() {
    local name=$1 want_status=$2 want_output=$3
    shift 4
    local output status errors
    errors=$(mktemp)
    set +e
    output=$(timeout 120 "$@" 2>"$errors")
    status=$?
    set -e
    if [ "$status" = "$want_status" ] && [ "$output" = "$want_output" ]; then
        echo "examples: $name: ok"
    else
        echo "examples: $name: FAILED (exit status $status, expected $want_status)" >&2
        [ "$status" = 124 ] && echo "examples: $name: timed out after 120 s" >&2
        diff -u <(printf '%s\n' "$want_output") <(printf '%s\n' "$output") \
            --label expected --label actual >&2 || true
        echo "--- stderr:" >&2
        cat "$errors" >&2
        failed=1
    fi
    rm -f "$errors"
}

kernel_output='hello from module.o
module says: 42
module unloaded, region bytes in use: 0'

for example in "${examples[@]}"; do
    started=$SECONDS
    case "$example" in
    host)
        # The README shows this program and its modules: they must not drift.
        readme=$(<README.md)
        for shown in examples/host/src/main.rs examples/host/modules/greet.c examples/host/modules/use.c; do
            if [[ "$readme" != *"$(<"$shown")"* ]]; then
                echo "examples: README.md no longer shows $shown as it is" >&2
                failed=1
            fi
        done
        cargo build -q -p modload-example-host
        check host 0 'add(2, 3) = 5
host_log: use.o computed 25
sum_of_squares(3, 4) = 25
unload of greet.o refused: module is in use by: use.o
unloaded use.o
unloaded greet.o
region bytes in use: 0' -- cargo run -q -p modload-example-host
        ;;
    kernel-x86_64 | kernel-aarch64)
        cd "$root/examples/$example"
        # Built in the QEMU test kernel's target directory (qemu/runner), with
        # its release profile: the core, alloc and modload builds of
        # `cargo xtask test` are reused instead of compiled again (about a
        # minute per architecture on two cores).
        export CARGO_TARGET_DIR="$root/target/qemu/${example#kernel-}/kernel"
        export CARGO_PROFILE_RELEASE_OPT_LEVEL=2 CARGO_PROFILE_RELEASE_DEBUG=1
        if [ "$example" = kernel-x86_64 ]; then
            # And with its rustflags (qemu/kernel/.cargo/config.toml), or
            # every crate differs and is built again: the one flag the
            # example lacks only picks curve25519's backend, which it does
            # not use.
            export CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS='-C relocation-model=static -C force-frame-pointers=yes --cfg curve25519_dalek_backend="serial"'
        fi
        # A user copies these kernels: they build without a warning.
        build_log=$(mktemp)
        "${bare_cargo[@]}" build -q --release 2>"$build_log" || {
            cat "$build_log" >&2
            exit 1
        }
        if grep -q '^warning' "$build_log"; then
            cat "$build_log" >&2
            echo "examples: $example: the kernel builds with warnings" >&2
            failed=1
        fi
        rm -f "$build_log"
        # x86-64 leaves QEMU through isa-debug-exit with (0x10 << 1) | 1;
        # AArch64 powers off through PSCI, and QEMU exits with 0.
        status=0
        [ "$example" = kernel-x86_64 ] && status=33
        # `cargo run` boots the kernel with the runner in .cargo/config.toml.
        check "$example" "$status" "$kernel_output" -- "${bare_cargo[@]}" run -q --release
        unset CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_OPT_LEVEL CARGO_PROFILE_RELEASE_DEBUG \
            CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS
        cd "$root"
        ;;
    *)
        echo "examples: unknown example '$example'" >&2
        exit 2
        ;;
    esac
    echo "examples: $example took $((SECONDS - started)) s"
done
exit "$failed"
