#!/usr/bin/env bash
# `modload run` on AArch64 Linux, under qemu-aarch64: cross-builds the tool
# (scripts/build-cli-aarch64.sh, or takes $MODLOAD_AARCH64), builds C programs
# for AArch64 as objects and as natively linked executables, and checks that
# running the objects through modload prints the same and exits the same as
# the executables do:
#   - the multi-file program of the host demo (tests/fixtures/prog), -fPIC,
#     -fno-pic, and -fno-pic -mcmodel=large;
#   - tests/fixtures/atomics, whose every atomic operation is a call to one
#     of libgcc's __aarch64_* outline-atomic helpers (no shared library has
#     them; modload must lend its own), built by gcc and by clang, run on a
#     CPU with LSE atomics and on one without (the helpers' two paths);
#   - the multi-file program again on kernels with 16 and 64 KiB pages
#     (qemu-aarch64 -p), where modules are laid out in those pages;
#   - crash reports (tests/fixtures/crash.c): a fault in a module names the
#     signal, the function, its caller and the module, and the process dies
#     of the signal; recursions fold; an overflow in a module's thread is
#     reported (its alternate stack comes from modload's pthread_create);
#   - GDB (gdb-multiarch on qemu-aarch64's gdbstub): with `run --gdb`, a
#     pending breakpoint in a module stops at its source line, with the
#     caller in the module loaded before it (as cli/tests/gdb.rs on x86_64).
# Prints "N passed, N failed" and exits non-zero if anything failed.
# Cold, the cross build (std from source, then the tool) dominates: 2 min 20 s
# on 2 cores shared with other work (4 min 40 s when they were busier); with
# the tool already built the whole script takes about 6 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh host cross real debug >&2

modload=${MODLOAD_AARCH64:-$(scripts/build-cli-aarch64.sh | tail -n1)}
sysroot=/usr/aarch64-linux-gnu
out=target/aarch64-host
rm -rf "$out"
mkdir -p "$out"

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
}

# qemu-aarch64 with the cross libc, bounded so that a hang fails the case.
qemu() { timeout 120 qemu-aarch64 -L "$sysroot" "$@"; }

# Runs `command...` and records its stdout and exit status in $1.{out,status}.
record() {
    local prefix=$1
    shift
    local status=0
    "$@" >"$prefix.out" 2>"$prefix.err" || status=$?
    echo "$status" >"$prefix.status"
}

# compare NAME DIR: the native run and the modload run of DIR agree.
compare() {
    local name=$1 dir=$2
    if cmp -s "$dir/native.out" "$dir/modload.out" &&
        cmp -s "$dir/native.status" "$dir/modload.status"; then
        pass "$name (exit $(cat "$dir/native.status"), $(wc -l <"$dir/native.out") lines)"
    else
        fail "$name: modload run differs from the linked program"
        echo "  native exit $(cat "$dir/native.status"), modload exit $(cat "$dir/modload.status")"
        diff "$dir/native.out" "$dir/modload.out" | head -20 | sed 's/^/  /' || true
        head -5 "$dir/modload.err" | sed 's/^/  stderr: /'
    fi
}

# build DIR CC FLAGS... -- SOURCES...: an object per source and a linked program.
build() {
    local dir=$1 cc=$2
    shift 2
    local flags=()
    while [ "$1" != -- ]; do
        flags+=("$1")
        shift
    done
    shift
    mkdir -p "$dir"
    local source
    for source in "$@"; do
        "$cc" "${flags[@]}" -c -o "$dir/$(basename "${source%.c}").o" "$source"
    done
    local link=("$cc")
    [ "$cc" = clang-22 ] && link+=(--target=aarch64-linux-gnu -fuse-ld=lld)
    "${link[@]}" -O2 -o "$dir/native" "$@" -lm -pthread
}

# The host demo's program, as position-independent and as fixed-address code
# of the small code model (ADRP, no GOT) and of the large one (MOVZ/MOVK).
for flags in "-fPIC" "-fno-pic" "-fno-pic -mcmodel=large"; do
    dir=$out/prog${flags// /}
    # shellcheck disable=SC2086 # the flags are words
    build "$dir" aarch64-linux-gnu-gcc -O2 $flags -- tests/fixtures/prog/*.c
    record "$dir/native" qemu "$dir/native" hello world
    record "$dir/modload" qemu "$modload" run "$dir"/*.o -- hello world
    compare "prog $flags" "$dir"
done

# Atomics, by gcc and by clang: first check that the objects really call the
# outline helpers (else the test would prove nothing), then run them in an
# order that makes modload wait for the objects they need.
atomics=(tests/fixtures/atomics/atomics.c tests/fixtures/atomics/helpers.c tests/fixtures/atomics/check.c)
for cc in aarch64-linux-gnu-gcc clang-22; do
    dir=$out/atomics-$cc
    flags=(-O2 -fPIC -Wall -Werror)
    [ "$cc" = clang-22 ] && flags+=(--target=aarch64-linux-gnu)
    build "$dir" "$cc" "${flags[@]}" -- "${atomics[@]}"
    # Every helper is called by helpers.o; atomics.o shows what the compiler emits.
    emitted=$(llvm-objdump-22 -dr "$dir/atomics.o" | grep -oE 'R_AARCH64_CALL26[[:space:]]+__aarch64_[a-z0-9_]+' | awk '{ print $2 }' | sort -u | wc -l)
    called=$(llvm-objdump-22 -dr "$dir"/*.o | grep -oE 'R_AARCH64_CALL26[[:space:]]+__aarch64_[a-z0-9_]+' | awk '{ print $2 }' | sort -u | wc -l)
    if [ "$emitted" -ge 80 ] && [ "$called" -eq 125 ]; then
        pass "atomics $cc: the compiler calls $emitted outline helpers, the objects all 125"
    else
        fail "atomics $cc: the compiler calls $emitted outline helpers (want >= 80), the objects $called (want 125)"
    fi
    # cortex-a53 (Armv8.0) has no LSE atomics, so the helpers take their
    # exclusive load/store loops; `max` has them, so the helpers use them.
    for cpu in max cortex-a53; do
        record "$dir/native" qemu -cpu "$cpu" "$dir/native"
        record "$dir/modload" qemu -cpu "$cpu" "$modload" run "$dir/atomics.o" "$dir/helpers.o" "$dir/check.o"
        compare "atomics $cc -cpu $cpu" "$dir"
    done
done

# GDB through qemu-aarch64's gdbstub, on the two modules of cli/tests/gdb.rs
# built with -g: main (first module) calls gdb_scale (second). Nothing
# ptrace()s modload under qemu-user, so `--gdb` turns on its registration
# with GDB's JIT interface. The breakpoint is set before the modules load.
dir=$out/gdb
mkdir -p "$dir"
for name in caller callee; do
    aarch64-linux-gnu-gcc -O0 -g -fno-omit-frame-pointer -fPIC -c \
        -o "$dir/$name.o" "tests/fixtures/gdb/gdb_$name.c"
done
caller_line=$(grep -n 'CALLER LINE' tests/fixtures/gdb/gdb_caller.c | cut -d: -f1)
callee_line=$(grep -n 'CALLEE LINE' tests/fixtures/gdb/gdb_callee.c | cut -d: -f1)
# A port nothing listens on (a connection to it is refused).
port=$((20000 + RANDOM % 20000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((20000 + RANDOM % 20000))
done
qemu -g "$port" "$modload" run --gdb "$dir/caller.o" "$dir/callee.o" >"$dir/modload.out" 2>&1 &
qemu_pid=$!
timeout 120 gdb-multiarch -batch -nx \
    -ex "set sysroot $sysroot" -ex 'set breakpoint pending on' \
    -ex 'set tcp auto-retry on' -ex 'set tcp connect-timeout 30' \
    -ex "file $modload" -ex "target remote 127.0.0.1:$port" \
    -ex 'break gdb_scale' -ex continue -ex 'bt 2' -ex continue \
    >"$dir/gdb.out" 2>"$dir/gdb.err" || true
kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
if grep -q "^Breakpoint 1, gdb_scale (value=7) at .*gdb_callee\.c:$callee_line\$" "$dir/gdb.out" &&
    grep -q "^#1 .* in main () at .*gdb_caller\.c:$caller_line\$" "$dir/gdb.out" &&
    grep -q 'exited normally' "$dir/gdb.out"; then
    pass "gdb: a pending breakpoint stops at gdb_callee.c:$callee_line, called from gdb_caller.c:$caller_line"
else
    fail "gdb: no stop at gdb_callee.c:$callee_line with main at gdb_caller.c:$caller_line as caller"
    sed 's/^/  gdb: /' "$dir/gdb.out" | head -20
    grep -v '^warning' "$dir/gdb.err" | head -5 | sed 's/^/  gdb stderr: /'
fi

# Kernels with 16 and 64 KiB pages (as some AArch64 kernels are): the region
# takes the kernel's page size, so the program runs and prints what it prints
# with 4 KiB pages, in each of its builds. qemu 7.2's -p makes the guest see
# another page size; later versions drop it, which a probe that prints the
# page size shows.
printf '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("%%ld\\n", sysconf(_SC_PAGESIZE)); return 0; }\n' >"$out/pagesize.c"
aarch64-linux-gnu-gcc -O2 -o "$out/pagesize" "$out/pagesize.c"
for page in 16384 65536; do
    if [ "$(timeout 120 qemu-aarch64 -p "$page" -L "$sysroot" "$out/pagesize" 2>/dev/null)" != "$page" ]; then
        echo "skip $((page / 1024)) KiB pages: this qemu-aarch64 cannot show a guest $page-byte pages"
        continue
    fi
    for flags in "-fPIC" "-fno-pic" "-fno-pic -mcmodel=large"; do
        dir=$out/prog${flags// /}
        record "$dir/modload" timeout 120 qemu-aarch64 -p "$page" -L "$sysroot" "$modload" run "$dir"/*.o -- hello world
        compare "prog $flags with $((page / 1024)) KiB pages" "$dir"
    done
done

# Crash reports (tests/fixtures/crash.c): qemu-user delivers the fault with
# a real AArch64 ucontext, so the report reads the PC, frame pointer and
# link register from it as on hardware. Each must name the signal, where
# the PC is and the caller in crash.o, and the process must die of the
# signal (128 + its number). __builtin_trap is `brk` here: SIGTRAP.
dir=$out/crash
mkdir -p "$dir"
aarch64-linux-gnu-gcc -O1 -fno-omit-frame-pointer -fno-optimize-sibling-calls \
    -c -o "$dir/crash.o" tests/fixtures/crash.c
# in_crash_o FUNCTION: a regular expression for `FUNCTION+0x14 [crash.o]`.
in_crash_o() { printf '%s\\+0x[0-9a-f]+ \\[crash\\.o\\]' "$1"; }
# crash_case MODE STATUS FIRST PC CALLER [ENV=VALUE]: FIRST, PC and CALLER
# are regular expressions for the report's first line, for where its pc
# line points and for where frame #1 points.
crash_case() {
    local mode=$1 status=$2 first=$3 pc=$4 caller=$5 setting=${6:-}
    local report="$dir/$mode"
    [ -n "$setting" ] && report="$report-${setting%%=*}"
    # The shell's own "Segmentation fault" notice is noise here: the status is checked.
    # shellcheck disable=SC2086 # an empty setting is no word
    { record "$report" env $setting timeout 120 qemu-aarch64 -L "$sysroot" "$modload" run "$dir/crash.o" -- "$mode"; } 2>/dev/null
    if [ "$(cat "$report.status")" = "$status" ] &&
        head -n1 "$report.err" | grep -qE "^$first\$" &&
        grep -qE "^  pc 0x[0-9a-f]+  $pc\$" "$report.err" &&
        grep -qE "^  #1 0x[0-9a-f]+  $caller\$" "$report.err"; then
        pass "crash report: $mode${setting:+ ($setting)}, exit $status: $(grep -E '^  (pc|#1) ' "$report.err" | sed -E 's/^ +//; s/ 0x[0-9a-f]+ //' | paste -sd';' - | sed 's/;/; /g')"
    else
        fail "crash report: $mode${setting:+ ($setting)}: want exit $status, /$first/, pc /$pc/, #1 /$caller/"
        echo "  exit $(cat "$report.status")"
        head -8 "$report.err" | sed 's/^/  stderr: /'
    fi
}
segv='modload: SIGSEGV \(invalid memory reference: address not mapped\) at address'
crash_case segv 139 "$segv 0x10, in a module" "$(in_crash_o crash_here)" "$(in_crash_o caller)"
crash_case none 139 "$segv 0x20, in a module" "$(in_crash_o crash_here)" "$(in_crash_o caller)" CRASH_IN_CONSTRUCTOR=1
crash_case jump 139 "$segv 0x30, not in a module" '\(unmapped\)' "$(in_crash_o jump_to)"
crash_case rodata 139 'modload: SIGSEGV \(invalid memory reference: no permission for the access\) at address 0x[0-9a-f]+ \(answer\+0x0 \[crash\.o\] in \.rodata\), in a module' \
    "$(in_crash_o overwrite)" "$(in_crash_o overwrite_answer)"
crash_case overflow 139 'modload: SIGSEGV \(invalid memory reference: [a-z ]+\) at address 0x[0-9a-f]+, in a module \(a stack overflow\)' \
    "$(in_crash_o recurse)" "$(in_crash_o recurse)"
crash_case ill 133 'modload: SIGTRAP \(trace or breakpoint trap: breakpoint\) at address 0x[0-9a-f]+, in a module' \
    "$(in_crash_o trap_here)" "$(in_crash_o trap_caller)"
crash_case int3 133 'modload: SIGTRAP \(trace or breakpoint trap: breakpoint\) at address 0x[0-9a-f]+, in a module' \
    "$(in_crash_o breakpoint_here)" "$(in_crash_o breakpoint_caller)"
# Recursions: a↔b folds into one line and the frames that started it show;
# a cycle too long to fold is cut, and the bottom of the stack still shows.
crash_case mutual 139 'modload: SIGSEGV \(invalid memory reference: [a-z ]+\) at address 0x[0-9a-f]+, in a module \(a stack overflow\)' \
    "$(in_crash_o '(ping|pong)')" "$(in_crash_o '(ping|pong)')"
crash_case rounds 139 'modload: SIGSEGV \(invalid memory reference: [a-z ]+\) at address 0x[0-9a-f]+, in a module \(a stack overflow\)' \
    "$(in_crash_o 'round[1-5]')" "$(in_crash_o 'round[1-5]')"
# A stack overflow in a thread the module started (its alternate signal
# stack comes from modload's stand-in for pthread_create).
crash_case thread_overflow 139 'modload: SIGSEGV \(invalid memory reference: [a-z ]+\) at address 0x[0-9a-f]+, in a module \(a stack overflow\)' \
    "$(in_crash_o thread_recurse)" "$(in_crash_o thread_recurse)"
# crash_has MODE WHAT REGEX: some line of MODE's report matches REGEX.
crash_has() {
    if grep -qE "$3" "$dir/$1.err"; then
        pass "crash report: $1 $2"
    else
        fail "crash report: $1 $2: no line /$3/"
    fi
}
crash_has mutual "folds the a-b cycle" '^  \.\.\. the 2 frames above repeat, [0-9]+ more frames \(to #[0-9]+\)$'
crash_has mutual "shows where it began" "^  #[0-9]+ 0x[0-9a-f]+  $(in_crash_o ping_pong)\$"
crash_has rounds "shows where it began after the cut" "^  #[0-9]+ 0x[0-9a-f]+  $(in_crash_o rounds)\$"
crash_has thread_overflow "folds the recursion down to the thread's start" "^  #[0-9]+ 0x[0-9a-f]+  $(in_crash_o thread_overflow)\$"
# Every module thread gets an alternate stack, which is gone when it ends.
record "$dir/thread_stacks" timeout 120 qemu-aarch64 -L "$sysroot" "$modload" run "$dir/crash.o" -- thread_stacks
if [ "$(cat "$dir/thread_stacks.status")" = 0 ] &&
    grep -qE '^threads 100 with an alternate stack 100 mappings gained 1?[0-9]$' "$dir/thread_stacks.out"; then
    pass "module threads: $(tail -n1 "$dir/thread_stacks.out")"
else
    fail "module threads: want 100 with an alternate stack and fewer than 20 mappings gained"
    cat "$dir/thread_stacks.out" "$dir/thread_stacks.err" | head -5 | sed 's/^/  /'
fi

echo "aarch64-host: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
