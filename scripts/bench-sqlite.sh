#!/usr/bin/env bash
# Whole process on SQLite, side by side in one run: the natively linked
# binary, `modload run` and `llvm-jitlink` on the same two objects (SQLite's
# 1.3 MB amalgamation and bench/sqlite/main.c, a small main whose work is
# tiny, so that start-up and loading dominate), timed with hyperfine, with
# each process's minor page faults (getrusage) and page-fault exceptions
# (perf stat, where perf works). Prints the figures and the
# two ratios against their targets (issue 17): modload run within 1.5× of
# the native binary, and at least 10× faster than llvm-jitlink. Two more rows
# give the floor: an empty main (bench/sqlite/empty.c) linked natively and
# run through `modload run`; from the four, the time left for loading SQLite
# under the 1.5× target, and the time its loading takes. A last row,
# bench/sqlite/memory-floor.c, only maps SQLite's object, copies its sections
# into fresh pages and protects them: against the empty native main, what
# the memory alone costs any loader that copies.
#
# scripts/bench.sh runs this and puts the figures in docs/PERFORMANCE.md; on
# its own it takes about a minute (the first run compiles SQLite, ~40 s).
# Options: --runs N (hyperfine runs per command, default 50). Environment:
# MODLOAD=PATH measures that modload instead of building target/release/modload
# (to compare with an older build).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=50
while (($#)); do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N]" >&2; exit 2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-report/sqlite"
build="$target/bench-sqlite"
rm -rf "$out"
mkdir -p "$out" "$build"

if [[ -n "${MODLOAD:-}" ]]; then
    modload="$(realpath "$MODLOAD")"
else
    cargo build -q --release -p modload-cli
    modload="$(realpath "$target/release/modload")"
fi
jitlink="$(command -v llvm-jitlink-22 || echo /usr/lib/llvm-22/bin/llvm-jitlink)"

# SQLite's sources as the real-program harness gets them: the pinned
# libsqlite3-sys crate (tests/real/sources).
manifest=(--manifest-path tests/real/sources/Cargo.toml --locked)
cargo fetch -q "${manifest[@]}"
sqlite="$(cargo metadata -q --format-version 1 "${manifest[@]}" | python3 -c '
import json, pathlib, sys
for package in json.load(sys.stdin)["packages"]:
    if package["name"] == "libsqlite3-sys":
        print(pathlib.Path(package["manifest_path"]).parent / "sqlite3")
')"
flags=(-O2 -fPIC -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -I"$sqlite")
if [[ ! "$build/sqlite3.o" -nt "$sqlite/sqlite3.c" ]]; then
    echo "== compiling sqlite3.c"
    gcc "${flags[@]}" -c "$sqlite/sqlite3.c" -o "$build/sqlite3.o"
fi
gcc "${flags[@]}" -c bench/sqlite/main.c -o "$build/main.o"
gcc -o "$build/native" "$build/main.o" "$build/sqlite3.o" -lm
objects=("$build/sqlite3.o" "$build/main.o")
gcc "${flags[@]}" -c bench/sqlite/empty.c -o "$build/empty.o"
gcc -o "$build/native-empty" "$build/empty.o" -lm
gcc -O2 -Wall -o "$build/memory-floor" bench/sqlite/memory-floor.c -lm

# The three must agree before their times mean anything.
expected="$("$build/native")"
for command in "$modload run ${objects[*]}" "$jitlink ${objects[*]}"; do
    got="$($command)"
    if [[ "$got" != "$expected" ]]; then
        echo "bench-sqlite: \`$command\` printed '$got', the native binary '$expected'" >&2
        exit 1
    fi
done

commands=("$build/native" "$modload run ${objects[*]}" "$jitlink ${objects[*]}"
    "$build/native-empty" "$modload run $build/empty.o" "$build/memory-floor $build/sqlite3.o")
echo "== hyperfine: native, modload run, llvm-jitlink, the empty mains, the memory floor ($runs runs each)"
hyperfine -N --style basic --warmup 5 --runs "$runs" \
    --export-json "$out/hyperfine.json" "${commands[@]}"

echo "== page faults and summary"
python3 - "$out" "$runs" "${commands[@]}" <<'PY'
import json, resource, subprocess, sys

out, runs, commands = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
labels = ["native", "modload run", "llvm-jitlink", "native, empty main",
          "modload run, empty main", "memory only (C)"]

def faults(command):
    """Minor page faults of one process, the mean of `runs` runs. The kernel
    counts pages that `madvise(MADV_POPULATE_WRITE)` fills here too."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    for _ in range(runs):
        subprocess.run(command.split(), check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    return (after - before) / runs

def exceptions(command):
    """Page-fault exceptions taken (perf's `page-faults` event, which a page
    filled by `madvise` is not), the mean of `runs` runs; None without perf."""
    try:
        done = subprocess.run(
            ["perf", "stat", "-x,", "-e", "page-faults", "-r", str(runs), *command.split()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return float(done.stderr.strip().splitlines()[-1].split(",")[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None

results = json.load(open(f"{out}/hyperfine.json"))["results"]
summary = {}
for label, command, result in zip(labels, commands, results):
    summary[label] = {
        "command": command,
        "median_s": result["median"],
        "mean_s": result["mean"],
        "stddev_s": result["stddev"],
        "min_s": result["min"],
        "minor_faults": faults(command),
        "fault_exceptions": exceptions(command),
    }
native, modload, jitlink = (summary[label] for label in labels[:3])
summary["modload_over_native"] = modload["median_s"] / native["median_s"]
summary["jitlink_over_modload"] = jitlink["median_s"] / modload["median_s"]
native_empty, modload_empty = summary[labels[3]], summary[labels[4]]
# SQLite's own work, as the native pair shows it; what 1.5× leaves for
# loading SQLite once `modload run` has started and SQLite has worked; and
# what loading it takes (`modload run`'s pair less SQLite's own work).
work = native["median_s"] - native_empty["median_s"]
summary["floor_over_native"] = modload_empty["median_s"] / native["median_s"]
summary["loading_budget_s"] = 1.5 * native["median_s"] - modload_empty["median_s"] - work
summary["loading_s"] = modload["median_s"] - modload_empty["median_s"] - work
summary["memory_s"] = summary[labels[5]]["median_s"] - native_empty["median_s"]
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)

print(f"{'':24} {'median':>10} {'min':>10} {'minor faults':>13} {'fault exceptions':>17}")
for label in labels:
    entry = summary[label]
    taken = entry["fault_exceptions"]
    print(f"{label:24} {entry['median_s'] * 1e3:8.2f} ms {entry['min_s'] * 1e3:7.2f} ms "
          f"{entry['minor_faults']:13.0f} {'-' if taken is None else f'{taken:.0f}':>17}")
ratio = summary["modload_over_native"]
speedup = summary["jitlink_over_modload"]
print(f"modload run / native:      {ratio:.2f}×  (target ≤ 1.5×: "
      f"{'met' if ratio <= 1.5 else 'NOT met'})")
print(f"llvm-jitlink / modload run: {speedup:.1f}×  (target ≥ 10×: "
      f"{'met' if speedup >= 10 else 'NOT met'})")
print(f"floor: modload run of an empty main / native SQLite: {summary['floor_over_native']:.2f}×")
print(f"loading SQLite takes {summary['loading_s'] * 1e3:.2f} ms, of which its memory alone "
      f"{summary['memory_s'] * 1e3:.2f} ms; 1.5× leaves it {summary['loading_budget_s'] * 1e3:.2f} ms")
PY
