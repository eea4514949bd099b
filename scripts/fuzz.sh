#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, starting from the checked-in
# seed corpus (fuzz/seeds: the test fixtures, x86_64 and AArch64). A crash,
# panic, leak or failed check exits non-zero and leaves the input in
# target/fuzz-artifacts/; each one found becomes a regression test.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#   FUZZ_TARGETS="parse plan load"   which targets (default: all three)
#   MODLOAD_FUZZ_TARGET_DIR=DIR      cargo target dir (default target/fuzz)
#
# The test command runs `scripts/fuzz.sh 60`. A longer campaign is the same
# script with a larger budget, e.g. `nice scripts/fuzz.sh 3600` (an hour per
# target); the working corpus in target/fuzz-corpus/ grows from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
# shellcheck disable=SC2206 # a space-separated list of names
targets=(${FUZZ_TARGETS:-parse plan load})
target_dir=${MODLOAD_FUZZ_TARGET_DIR:-$PWD/target/fuzz}
corpus_root=$PWD/target/fuzz-corpus
artifacts=$PWD/target/fuzz-artifacts

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== cargo fuzz build"
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir"

mkdir -p "$artifacts"
total=0
for target in "${targets[@]}"; do
    corpus=$corpus_root/$target
    log=$target_dir/$target.log
    mkdir -p "$corpus"
    echo "== fuzz $target for ${seconds}s"
    status=0
    # The seed directory is read-only input; new finds go to the working corpus.
    cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "$target" \
        "$corpus" fuzz/seeds -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $target: ${runs:-0} executions, exit $status"
    if [ "$status" -ne 0 ]; then
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" >&2 || tail -30 "$log" >&2
        echo "fuzz: $target failed; the input is in $artifacts (log: $log)" >&2
        exit 1
    fi
    total=$((total + ${runs:-0}))
done
echo "fuzz: ${#targets[@]} targets, $total executions, no failures"
