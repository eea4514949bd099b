#!/usr/bin/env bash
# Rebuilds the checked-in seed corpus (fuzz/seeds/) from the test fixtures:
# x86_64 objects from gcc and gas, AArch64 objects from clang-22. The seeds are
# a snapshot; rebuild them when fixtures that matter to fuzzing change.
#
# Usage: fuzz/make-seeds.sh      (needs gcc and clang-22: scripts/install-deps.sh host cross)
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/seeds
fixtures=tests/fixtures
rm -f "$out"/*.o
mkdir -p "$out"

base=(-c -O2 -fno-asynchronous-unwind-tables -fno-stack-protector)
declare -A x86_models=(
    [pic]="-fPIC"
    [kernel]="-fno-pic -mcmodel=kernel -mno-red-zone"
    [large]="-fPIC -mcmodel=large"
)
declare -A arm_models=(
    [small]=""
    [pic]="-fPIC"
    [large]="-mcmodel=large"
)

for source in m1 m2 m3 common weak_undef unresolved; do
    for model in "${!x86_models[@]}"; do
        # shellcheck disable=SC2086 # the model is a list of flags
        gcc "${base[@]}" -fcommon ${x86_models[$model]} "$fixtures/$source.c" \
            -o "$out/x86_64-$source-$model.o"
    done
    for model in "${!arm_models[@]}"; do
        # shellcheck disable=SC2086
        clang-22 --target=aarch64-none-elf "${base[@]}" -fcommon ${arm_models[$model]} \
            "$fixtures/$source.c" -o "$out/aarch64-$source-$model.o"
    done
done
g++ "${base[@]}" -std=c++17 -fno-exceptions -fno-rtti -fPIC \
    "$fixtures/comdat_a.cpp" -o "$out/x86_64-comdat_a-cxx.o"
clang-22 --target=aarch64-none-elf "${base[@]}" -std=c++17 -fno-exceptions -fno-rtti \
    "$fixtures/comdat_a.cpp" -o "$out/aarch64-comdat_a-cxx.o"
for source in relocs relocs_data relocs_small abs_got comdat_a common_first overlapping_fixups far_plt; do
    gcc -c "$fixtures/$source.s" -o "$out/x86_64-$source-as.o"
done
for source in "$fixtures"/aarch64/c/*.c; do
    name=$(basename "$source" .c)
    clang-22 --target=aarch64-none-elf "${base[@]}" -I "$fixtures/aarch64/c" \
        "$source" -o "$out/aarch64-fixture-$name.o"
done
# Small seeds only: libFuzzer mutates small inputs far faster, and the
# repository keeps no large binaries.
find "$out" -name '*.o' -size +16k -print -delete
ls "$out" | wc -l
du -sh "$out"
