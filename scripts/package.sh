#!/usr/bin/env bash
# Checks that the published crates, modload and modload-platform, package and
# work as packaged: `cargo package` builds both from their .crate files (the
# platform against the packaged modload, through cargo's local registry
# overlay, as crates.io will see them); then each .crate is unpacked apart
# from the workspace and its unit and doc tests run there, with every feature.
# It also holds the MSRV claim (`rust-version` in Cargo.toml) to account: the
# toolchain doing all of the above must be exactly that version, so a newer
# default toolchain fails here instead of leaving the claim unchecked.
# Offline after one `cargo fetch`; about 1 minute from a cold target dir.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
# Where cargo puts the .crate files (CARGO_TARGET_DIR and config included).
target_dir=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -d "$target_dir" ] || mkdir -p "$target_dir"
check_target="$target_dir/package-check"
summary=()

fail() {
    echo "package.sh: error: $*" >&2
    exit 1
}
trap 'echo "package.sh: error: \"$BASH_COMMAND\" failed (line $LINENO)" >&2' ERR

scratch=$(mktemp -d "${TMPDIR:-/tmp}/modload-package.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# "1.95" from `rust-version = "1.95"`, "1.95.0" from "rustc 1.95.0 (...)".
msrv=$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || fail "no rust-version in Cargo.toml's [workspace.package]"
rustc_version=$(rustc --version | awk '{ print $2 }')
cargo_version=$(cargo --version | awk '{ print $2 }')
for tool_version in "$rustc_version" "$cargo_version"; do
    case "$tool_version" in
    "$msrv" | "$msrv".*) ;;
    *) fail "the crates claim rust-version $msrv but this toolchain is rustc $rustc_version, cargo $cargo_version; build with $msrv or change the claim in Cargo.toml" ;;
    esac
done
summary+=("MSRV $msrv: everything below built with rustc $rustc_version, cargo $cargo_version")

version_of() {
    cargo pkgid -p "$1" | sed 's/.*[#@]//'
}
modload_version=$(version_of modload)
platform_version=$(version_of modload-platform)

echo "== cargo package -p modload -p modload-platform"
# Everything later runs offline; this fetches whatever the cache lacks.
cargo fetch --locked --quiet
log="$scratch/package.log"
# No stale .crate from an earlier run may stand in for this one's.
rm -f "$target_dir/package/modload-$modload_version.crate" \
    "$target_dir/package/modload-platform-$platform_version.crate"
# Packaged together, the platform's build resolves `modload = "0.1.0"` to the
# modload .crate just made, which is not on crates.io. Nothing is published
# from here, so uncommitted changes are checked as they are (--allow-dirty).
if ! cargo package --offline --locked --allow-dirty -p modload -p modload-platform >"$log" 2>&1; then
    cat "$log" >&2
    fail "cargo package failed"
fi
cat "$log"
# Missing metadata and build warnings are warnings to cargo; not here.
if grep -q '^warning' "$log"; then
    fail "cargo package warned (above)"
fi

# What each package must carry, and a bound that keeps test data out.
max_crate_bytes=$((512 * 1024))
check_contents() {
    local crate=$1
    shift
    local file="$target_dir/package/$crate.crate"
    [ -f "$file" ] || fail "no $file"
    local listing
    listing=$(tar -tzf "$file")
    for required in "$@"; do
        grep -qx "$crate/$required" <<<"$listing" || fail "$file lacks $required"
    done
    local bytes files
    bytes=$(stat -c %s "$file")
    files=$(grep -c . <<<"$listing")
    [ "$bytes" -le "$max_crate_bytes" ] || fail "$file is $bytes bytes, over $max_crate_bytes: what was added?"
    tar -xzf "$file" -C "$scratch"
    summary+=("$crate.crate: $files files, $((bytes / 1024)) KiB, verified by cargo package")
}
common_files=(Cargo.toml Cargo.lock README.md LICENSE-MIT LICENSE-APACHE src/lib.rs)
check_contents "modload-$modload_version" "${common_files[@]}" testdata/example.o
check_contents "modload-platform-$platform_version" "${common_files[@]}"
grep -qx "rust-version = \"$msrv\"" "$scratch/modload-$modload_version/Cargo.toml" ||
    fail "the packaged modload does not claim rust-version $msrv"
grep -qx "rust-version = \"$msrv\"" "$scratch/modload-platform-$platform_version/Cargo.toml" ||
    fail "the packaged modload-platform does not claim rust-version $msrv"

# Runs `cargo test --all-features` (unit and doc tests) in an unpacked crate
# and adds its counts to the summary.
test_unpacked() {
    local crate=$1
    shift
    echo "== cargo test --all-features in the unpacked $crate"
    local test_log="$scratch/$crate.test.log"
    if ! (cd "$scratch/$crate" &&
        CARGO_TARGET_DIR="$check_target" cargo test --offline --all-features "$@") \
        >"$test_log" 2>&1; then
        cat "$test_log" >&2
        fail "tests of the unpacked $crate failed"
    fi
    grep -E '^(test result|running|     Running|   Doc-tests)' "$test_log"
    local passed runs
    passed=$(awk '/^test result: ok\./ { sum += $4 } END { print sum + 0 }' "$test_log")
    runs=$(grep -c '^test result: ok\.' "$test_log")
    [ "$runs" -ge 2 ] || fail "expected unit and doc test runs in $crate, saw $runs"
    [ "$passed" -gt 0 ] || fail "no test ran in $crate"
    summary+=("$crate unpacked: $passed tests passed (unit and doc, all features)")
}
test_unpacked "modload-$modload_version" --locked
# The unpacked platform names modload from crates.io; take the unpacked one.
test_unpacked "modload-platform-$platform_version" \
    --config "patch.crates-io.modload.path=\"$scratch/modload-$modload_version\""

echo "== package summary"
printf '%s\n' "${summary[@]}"
echo "package.sh: ok in $((SECONDS - started)) s"
