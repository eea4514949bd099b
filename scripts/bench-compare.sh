#!/usr/bin/env bash
# scripts/bench-compare.sh REPO_DIR OUT_FILE
#
# The figures a change to loader/ must not make worse, measured on the
# checkout REPO_DIR the way scripts/bench.sh measures them, written as
# markdown to OUT_FILE. Run it on a checkout from before the change and on
# one from after (issue 18 did, for the layering: bench/NOTES.md, round 13).
#
#   1. callgrind instructions, exactly as bench.sh runs them:
#      `perf-report probe load|jitlink large_pic|large_nopic N` and
#      `perf-report probe scale-load-noprotect|scale-unload|scale-load scale N`
#      for N = 10 100 1000 5000, under
#      `valgrind --tool=callgrind --toggle-collect=modload_bench_probe`;
#      callgrind's total divided by N (as bench.sh does). Machine load does not
#      move them: repeat runs of the same binary give the same count.
#   2. JITLink ratio, two ways, each run ROUNDS times (machine noise):
#      a. in-process criterion medians `load-large_*/modload` vs `/jitlink`
#         (cargo bench --bench load): what docs/PERFORMANCE.md's
#         "modload ≥ 20× faster than JITLink" target is computed from;
#      b. whole process, `hyperfine -N --warmup 3 --runs RUNS` of
#         `modload run X.o` and `llvm-jitlink X.o` side by side (bench.sh's
#         section 5).
#
# Only the perf-report CLI, the modload CLI, the cargo package names and the
# criterion ids are used, so the script does not depend on where the loader's
# internal modules live.
#
# Environment: CARGO_TARGET_DIR (default REPO_DIR/target), RUNS (hyperfine
# runs, default 30), ROUNDS (default 2), SKIP_CRITERION=1, SKIP_HYPERFINE=1,
# SKIP_JITLINK_CALLGRIND=1, CALLGRIND_REPEAT (default 1).
# Needs valgrind, hyperfine, jq, llvm-jitlink-22 (scripts/install-deps.sh bench).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 REPO_DIR OUT_FILE" >&2
    exit 2
fi
repo="$(cd "$1" && pwd)"
out_file="$(realpath -m "$2")"
unset MODLOAD_BENCH_DIR # the objects live in $CARGO_TARGET_DIR/bench-objects
runs="${RUNS:-30}"
rounds="${ROUNDS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR" ;; esac

for tool in valgrind hyperfine jq cargo; do
    command -v "$tool" >/dev/null || { echo "$tool missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
jitlink="$(command -v llvm-jitlink-22 || echo /usr/lib/llvm-22/bin/llvm-jitlink)"
[[ -x "$jitlink" ]] || { echo "llvm-jitlink-22 missing" >&2; exit 1; }

started=$(date +%s)
# Always /tmp and six random characters: the probes run from here (below).
work="$(mktemp -d /tmp/bench-compare.XXXXXX)"
trap 'rm -rf "$work"' EXIT

cd "$repo"
commit="$(git rev-parse HEAD)"
subject="$(git log -1 --format=%s)"
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty=" (with uncommitted changes)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build ($CARGO_TARGET_DIR)" >&2
nice -n 10 cargo build -q --release -p modload-bench -p modload-cli
# Always, and after the build: `cargo bench` rebuilds release/perf-report with
# the dev-dependencies' features unified (a different binary, ~85 instructions
# a load apart), and bench.sh's callgrind probes run after its criterion run,
# so on this binary.
nice -n 10 cargo bench -q -p modload-bench --bench load --no-run
report="$CARGO_TARGET_DIR/release/perf-report"
modload="$CARGO_TARGET_DIR/release/modload"
build_done=$(date +%s)

echo "== objects" >&2
"$report" objects >"$work/objects.txt"
object_path() { awk -v n="$1" '$1 == n {print $2}' "$work/objects.txt"; }
objects=(large_pic large_nopic)
for name in "${objects[@]}"; do
    [[ -n "$(object_path "$name")" ]] || { echo "perf-report objects lists no $name" >&2; exit 1; }
done

# The instruction counts move a little with the lengths of the environment,
# of argv[0] and of the objects' path, which shift heap and stack offsets
# (memcpy's and the allocator's paths depend on alignment): JITLink by up to
# ~2%, scale-unload ~1%, a modload load ~0.002%. So the probes run with the
# same binary path length, an empty environment and the objects behind a
# symlink of fixed length, whatever the checkout's path: then the counts
# repeat exactly, and two checkouts of the same commit differ by ~5
# instructions a load. CALLGRIND_REPEAT (default 1) runs each probe more
# often and shows the range, to check that.
probe_dir="$work/run"
mkdir -p "$probe_dir/bin"
cp "$report" "$probe_dir/bin/perf-report"
ln -s "$CARGO_TARGET_DIR/bench-objects" "$probe_dir/objects"

# callgrind_once FILE ARGS...: runs `perf-report probe ARGS` under callgrind
# and prints callgrind's total (instructions inside modload_bench_probe).
callgrind_once() {
    local file="$1"
    shift
    (cd "$probe_dir" && env -i PATH=/usr/bin:/bin MODLOAD_BENCH_DIR="$probe_dir/objects" \
        valgrind --tool=callgrind --callgrind-out-file="$file" \
        --toggle-collect=modload_bench_probe "$probe_dir/bin/perf-report" probe "$@" \
        2>"$file.stderr") || {
        # Command substitution ignores set -e: leave a mark the caller checks.
        echo "probe $* failed:" >&2
        grep -v "^==[0-9]*==" "$file.stderr" | tail -5 >&2
        touch "$work/failed"
        return 1
    }
    awk '/^(summary|totals):/ {print $2; exit}' "$file"
}
# callgrind TAG COUNT ARGS...: the probe CALLGRIND_REPEAT times; prints
# "median min max" of callgrind's total divided by COUNT.
callgrind() {
    local tag="$1" count="$2" i
    shift 2
    for i in $(seq 1 "${CALLGRIND_REPEAT:-1}"); do
        per "$(callgrind_once "$work/$tag-$i.callgrind" "$@")" "$count"
        echo
    done | sort -n | awk '{v[NR] = $1} END {printf "%s %s %s", v[int((NR + 1) / 2)], v[1], v[NR]}'
}
per() { awk -v t="$1" -v n="$2" 'BEGIN {printf "%.0f", t / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.3f ms", s * 1e3}'; }
us() { awk -v ns="$1" 'BEGIN {printf "%.1f µs", ns / 1e3}'; }

echo "== callgrind" >&2
callgrind_rows=()
declare -A per_load
load_probes=(load:large_pic:5 load:large_nopic:5)
[[ "${SKIP_JITLINK_CALLGRIND:-0}" == 1 ]] || load_probes+=(jitlink:large_pic:2 jitlink:large_nopic:2)
for probe in "${load_probes[@]}"; do
    IFS=: read -r what object count <<<"$probe"
    read -r median low high <<<"$(callgrind "$what-$object" "$count" "$what" "$object" "$count")"
    [[ ! -e "$work/failed" ]] || exit 1
    per_load[$what-$object]="$median"
    callgrind_rows+=("| \`probe $what $object $count\` | per load | **$median** | $low – $high |")
done
for what in scale-load-noprotect scale-unload scale-load; do
    for count in 10 100 1000 5000; do
        read -r median low high <<<"$(callgrind "$what-$count" "$count" "$what" scale "$count")"
        [[ ! -e "$work/failed" ]] || exit 1
        callgrind_rows+=("| \`probe $what scale $count\` | per module | **$median** | $low – $high |")
    done
done

criterion_rows=()
if [[ "${SKIP_CRITERION:-0}" != 1 ]]; then
    echo "== criterion (in process)" >&2
    for round in $(seq 1 "$rounds"); do
        # Each round's figures come from criterion's new/estimates.json,
        # median, as perf-report write reads them.
        cargo bench -q -p modload-bench --bench load -- \
            '^load-large_(pic|nopic)/(modload|jitlink)$' >"$work/criterion-$round.txt" 2>&1 ||
            { cat "$work/criterion-$round.txt" >&2; exit 1; }
        for name in "${objects[@]}"; do
            median() {
                local file="$CARGO_TARGET_DIR/criterion/load-$name/$1/new/estimates.json"
                [[ -f "$file" ]] && jq '.median.point_estimate' "$file" || echo ""
            }
            m="$(median modload)"
            j="$(median jitlink)"
            if [[ -n "$m" && -n "$j" ]]; then
                criterion_rows+=("| \`$name\` | $round | $(us "$m") | $(us "$j") | **$(ratio "$j" "$m")×** |")
            else
                criterion_rows+=("| \`$name\` | $round | n/a | n/a | no criterion result |")
            fi
        done
    done
fi

echo "== hyperfine (whole process)" >&2
hyperfine_rows=()
[[ "${SKIP_HYPERFINE:-0}" == 1 ]] && rounds_hyperfine=0 || rounds_hyperfine="$rounds"
for round in $(seq 1 "$rounds_hyperfine"); do
    for name in "${objects[@]}"; do
        path="$(object_path "$name")"
        json="$work/hyperfine-$name-$round.json"
        hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$json" \
            "$modload run $path" "$jitlink $path" >/dev/null
        m="$(jq '.results[0].median' "$json")"
        j="$(jq '.results[1].median' "$json")"
        ms_sd="$(jq '.results[0].stddev' "$json")"
        js_sd="$(jq '.results[1].stddev' "$json")"
        hyperfine_rows+=("| \`$name\` | $round | $(ms "$m") (σ $(ms "$ms_sd")) | $(ms "$j") (σ $(ms "$js_sd")) | **$(ratio "$j" "$m")×** |")
    done
done

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
finished=$(date +%s)

mkdir -p "$(dirname "$out_file")"
{
    echo "# Performance figures"
    echo
    echo "- commit: \`$commit\`$dirty — $subject"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- load average (1, 5, 15 min) before: $load_before; after: $load_after ($(nproc) cores)"
    echo "- script: \`$0 $repo $out_file\` (RUNS=$runs ROUNDS=$rounds), $((finished - started)) s in all, of which build $((build_done - started)) s"
    echo "- tools: $(valgrind --version), $(hyperfine --version), $("$jitlink" --version | grep -i 'llvm version' | head -1 | sed 's/^ *//'), $(rustc -V)"
    echo
    echo "## Callgrind instructions (machine load does not move them)"
    echo
    echo "\`valgrind --tool=callgrind --toggle-collect=modload_bench_probe perf-report probe ...\`;"
    echo "callgrind's total over the measured calls divided by their number, as scripts/bench.sh"
    echo "does (one unmeasured round first). Each probe ran CALLGRIND_REPEAT=${CALLGRIND_REPEAT:-1} time(s) from a fixed-length"
    echo "path with an empty environment (see the script): median, and the range of the runs."
    echo
    echo "| probe | instructions | median | range |"
    echo "|---|---|---|---|"
    printf '%s\n' "${callgrind_rows[@]}"
    if [[ -n "${per_load[jitlink-large_pic]:-}" ]]; then
        echo
        for name in "${objects[@]}"; do
            echo "JITLink ÷ modload in instructions, \`$name\`: $(ratio "${per_load[jitlink-$name]}" "${per_load[load-$name]}")×."
        done
    fi
    if ((${#criterion_rows[@]})); then
        echo
        echo "## JITLink ratio in process (criterion medians; the ≥ 20× target)"
        echo
        echo "\`cargo bench -p modload-bench --bench load -- '^load-large_(pic|nopic)/(modload|jitlink)\$'\`"
        echo
        echo "| object | round | modload | JITLink | JITLink ÷ modload |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${criterion_rows[@]}"
    fi
    if ((${#hyperfine_rows[@]})); then
        echo
        echo "## JITLink ratio, whole process (hyperfine medians)"
        echo
        echo "\`hyperfine -N --warmup 3 --runs $runs 'modload run X.o' 'llvm-jitlink-22 X.o'\`"
        echo
        echo "| object | round | modload run | llvm-jitlink | llvm-jitlink ÷ modload run |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${hyperfine_rows[@]}"
    fi
} >"$out_file"
echo "== wrote $out_file ($((finished - started)) s)" >&2
