#!/usr/bin/env bash
# Runs every benchmark and writes docs/PERFORMANCE.md from what it measured:
# modload against LLVM 22's ORC (JITLink, RuntimeDyld) in one process on the
# same bytes, modload's phases, scaling to 5,000 modules, memory, and whole
# processes (`modload run` against `llvm-jitlink`, with hyperfine; on SQLite
# also against the natively linked binary: scripts/bench-sqlite.sh). Instruction
# counts come from callgrind, which machine noise does not move.
#
# Takes about 15 minutes on 2 cores (the first run also compiles the ~1 MiB
# benchmark objects). Other work on the machine makes the times noisy: the
# report records the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

# The bench group brings llvm-22-dev, hyperfine and valgrind (callgrind gives
# the instruction counts, which machine noise does not move).
scripts/install-deps.sh host bench

target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-report"
rm -rf "$out"
mkdir -p "$out/hyperfine" "$out/callgrind"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build"
cargo build -q --release -p modload-cli -p modload-bench
report="$target/release/perf-report"
modload="$target/release/modload"
jitlink="$(command -v llvm-jitlink-22 || echo /usr/lib/llvm-22/bin/llvm-jitlink)"

echo "== objects"
"$report" objects | tee "$out/objects.txt"

echo "== criterion: loads, phases, scaling"
cargo bench -q -p modload-bench --bench load

echo "== memory"
"$report" memory "$out/memory.json"

echo "== callgrind: instruction counts"
if command -v valgrind >/dev/null; then
    probes=(load:large_pic:5 relocate:large_pic:5 relocate_bare:large_pic:5 jitlink:large_pic:2)
    {
        echo "{"
        first=1
        for probe in "${probes[@]}"; do
            IFS=: read -r what object count <<<"$probe"
            file="$out/callgrind/$what-$object.out"
            valgrind --tool=callgrind --callgrind-out-file="$file" \
                --toggle-collect=modload_bench_probe \
                "$report" probe "$what" "$object" "$count" 2>/dev/null
            total="$(awk '/^(summary|totals):/ {print $2; exit}' "$file")"
            ((first)) || echo ","
            first=0
            printf '"%s": {"object": "%s", "instructions": %s}' \
                "$what" "$object" "$(awk -v t="$total" -v n="$count" 'BEGIN {printf "%.0f", t / n}')"
        done
        echo "}"
    } >"$out/callgrind.json"
    # Where a whole load's instructions go, function by function (inclusive).
    callgrind_annotate --inclusive=yes "$out/callgrind/load-large_pic.out" \
        >"$out/callgrind/load-large_pic.txt" 2>/dev/null || true
    # Instructions per scaling module at each size: the loader's own work,
    # which stays flat unless something walks the earlier modules.
    {
        echo "{"
        first=1
        for what in scale-load-noprotect scale-unload; do
            for count in 10 100 1000 5000; do
                file="$out/callgrind/$what-$count.out"
                valgrind --tool=callgrind --callgrind-out-file="$file" \
                    --toggle-collect=modload_bench_probe \
                    "$report" probe "$what" scale "$count" 2>/dev/null
                total="$(awk '/^(summary|totals):/ {print $2; exit}' "$file")"
                ((first)) || echo ","
                first=0
                printf '"%s/%s": %s' "$what" "$count" \
                    "$(awk -v t="$total" -v n="$count" 'BEGIN {printf "%.0f", t / n}')"
            done
        done
        echo "}"
    } >"$out/callgrind-scale.json"
else
    echo "valgrind missing: no instruction counts" >&2
    echo "{}" >"$out/callgrind.json"
    echo "{}" >"$out/callgrind-scale.json"
fi

echo "== hyperfine: modload run against llvm-jitlink"
while read -r name path; do
    hyperfine -N --style basic --warmup 3 --runs 30 \
        --export-json "$out/hyperfine/$name.json" \
        "$modload run $path" "$jitlink $path"
done <"$out/objects.txt"
prog=()
for source in tests/fixtures/prog/*.c; do
    object="$out/prog-$(basename "${source%.c}").o"
    gcc -c -O2 -fPIC -fno-asynchronous-unwind-tables -o "$object" "$source"
    prog+=("$object")
done
hyperfine -N --style basic --warmup 3 --runs 30 --ignore-failure \
    --export-json "$out/hyperfine/demo-program-5-objects.json" \
    "$modload run ${prog[*]}" "$jitlink ${prog[*]}"

echo "== whole process on SQLite: native, modload run, llvm-jitlink"
scripts/bench-sqlite.sh

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
{
    echo "\$ lscpu"
    lscpu | grep -E '^(Architecture|Model name|CPU\(s\)|Thread|Core|Socket|CPU max MHz|L1d|L2|L3)'
    echo
    echo "\$ uname -srm"
    uname -srm
    echo "\$ rustc -V"
    rustc -V
    echo "\$ gcc --version"
    gcc --version | head -1
    echo "\$ $jitlink --version"
    "$jitlink" --version | grep -i version | head -1
    echo "\$ hyperfine --version"
    hyperfine --version
    echo
    echo "load average (1, 5, 15 min) before: $load_before; after: $load_after"
    echo "($(nproc) cores: a load average above that means other work ran beside the benchmarks)"
} >"$out/machine.txt"

"$report" write docs/PERFORMANCE.md \
    --criterion "$target/criterion" \
    --hyperfine "$out/hyperfine" \
    --memory "$out/memory.json" \
    --callgrind "$out/callgrind.json" \
    --callgrind-scale "$out/callgrind-scale.json" \
    --profile "$out/callgrind/load-large_pic.txt" \
    --machine "$out/machine.txt" \
    --sqlite "$out/sqlite/summary.json" \
    --notes bench/NOTES.md \
    --command "scripts/bench.sh"
echo "== wrote docs/PERFORMANCE.md"
