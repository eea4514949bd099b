#!/usr/bin/env bash
# The real-program harness: builds Lua, zlib, lz4, zstd, bzip2, SQLite, a C++
# program, an atomics program and tests/fixtures/prog one object per source
# file, with three flag sets (gcc -fPIC, gcc -fno-pic, clang-22 -fno-pic
# -mcmodel=large), links each natively, and checks that `modload run` of the
# same objects prints the same stdout and exits with the same status.
#
# Usage: real-programs.sh [--arch x86_64|aarch64] [--only PROGRAM]...
#                         [--flag-set SET]... [--keep] [-j JOBS] [--timeout S]
#   --arch      x86_64 (default) runs on the host; aarch64 cross-compiles and
#               runs the native binaries and modload under qemu-aarch64
#   --only      run only these programs (lua zlib lz4 zstd bzip2 sqlite cpp
#               atomics prog; repeatable or comma-separated)
#   --flag-set  run only these flag sets (gcc-fpic gcc-nopic clang-large)
#   --keep      keep the outputs of passing cases too (failing ones are kept)
#
# Environment: MODLOAD=PATH uses that x86_64 modload instead of building
# target/release/modload; MODLOAD_AARCH64=PATH names an aarch64 build of the
# CLI for --arch aarch64 (without it, the aarch64 modload cases are skipped
# and say so; the native binaries are still built and run).
#
# Everything goes to target/real/<arch>/<flag set>/<program>/: obj/ (objects,
# reused while their sources and command are unchanged), native (the natively
# linked binary), native.* and <order>.* (stdout, stderr, status, command).
# One line per case, PASS or FAIL with the reason; the last line is
# `N passed, N failed`; the exit status is 1 if any case failed.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=x86_64
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
    --arch) arch="${args[i + 1]:-}" ;;
    --arch=*) arch="${args[i]#--arch=}" ;;
    esac
done

scripts/install-deps.sh host cross real >&2

if [ "$arch" = x86_64 ] && [ -z "${MODLOAD:-}" ]; then
    cargo build -q --release -p modload-cli
fi

exec python3 tests/real/harness.py "$@"
