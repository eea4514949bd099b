//! Crash reports of `modload run`: C modules that fault on purpose, run
//! through the binary; the report on stderr must name the signal, the
//! faulting function and its module, and the callers, and the process must
//! die of the signal.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// Compiles `tests/fixtures/crash.c` (each of its faults happens in a
/// function another calls) to `dir/crash.o`, with frame pointers, as a
/// crash report needs for its backtrace, and without sibling calls, which
/// would take the callers out of the stack.
fn compile(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/crash.c");
    let flags = [
        "-O1",
        "-fno-omit-frame-pointer",
        "-fno-optimize-sibling-calls",
    ];
    common::gcc(&source, dir.join("crash.o"), &flags)
}

fn run(object: &Path, mode: &str, environment: &[(&str, &str)]) -> Output {
    Command::new(MODLOAD)
        .arg("run")
        .arg(object)
        .args(["--", mode])
        .envs(environment.iter().copied())
        .output()
        .expect("run the modload binary")
}

/// The report's lines, after checking that the process died of `signal`.
fn report(output: &Output, signal: i32) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.signal(),
        Some(signal),
        "status {:?}, stderr:\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.lines().map(str::to_owned).collect()
}

/// The line that starts with `prefix` (after indentation), whole.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|line| line.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting `{prefix}` in:\n{}", lines.join("\n")))
}

/// Checks that `line` is `PREFIX 0xADDRESS  FUNCTION+0xOFFSET [MODULE]`.
fn names(line: &str, function: &str, module: &str) {
    let mut words = line.split_whitespace().skip(1);
    let address = words.next().unwrap_or_default();
    assert!(address.starts_with("0x"), "{line}");
    let location = words.next().unwrap_or_default();
    assert!(
        location.starts_with(&format!("{function}+0x")),
        "`{line}` should name {function}"
    );
    assert_eq!(words.next(), Some(format!("[{module}]").as_str()), "{line}");
}

#[test]
fn segfault_names_function_module_and_callers() {
    let dir = common::workdir("crash", "segv");
    let object = compile(&dir);
    let output = run(&object, "segv", &[]);
    let lines = report(&output, libc::SIGSEGV);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "mode segv\n");
    assert_eq!(
        lines.first().map(String::as_str),
        Some(
            "modload: SIGSEGV (invalid memory reference: address not mapped) at address 0x10, \
             in a module"
        ),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "crash_here", "crash.o");
    names(line(&lines, "#1 "), "caller", "crash.o");
    names(line(&lines, "#2 "), "main", "crash.o");
    // Then modload's own frames, outside modules.
    assert!(line(&lines, "#3 ").ends_with("(modload)"), "{lines:#?}");
}

#[test]
fn constructors_are_covered() {
    let dir = common::workdir("crash", "constructor");
    let object = compile(&dir);
    let output = run(&object, "none", &[("CRASH_IN_CONSTRUCTOR", "1")]);
    let lines = report(&output, libc::SIGSEGV);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "",
        "main never ran"
    );
    assert!(
        lines
            .first()
            .is_some_and(|first| first.contains("at address 0x20, in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "crash_here", "crash.o");
    names(line(&lines, "#1 "), "caller", "crash.o");
    names(line(&lines, "#2 "), "early", "crash.o");
}

#[test]
#[cfg(target_arch = "x86_64")]
fn divide_by_zero_is_sigfpe() {
    let dir = common::workdir("crash", "fpe");
    let object = compile(&dir);
    let lines = report(&run(&object, "fpe", &[]), libc::SIGFPE);
    assert!(
        lines.first().is_some_and(|first| first.starts_with(
            "modload: SIGFPE (arithmetic exception: integer divide by zero) at address 0x"
        ) && first.ends_with(", in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "divide", "crash.o");
    names(line(&lines, "#1 "), "divide_caller", "crash.o");
    names(line(&lines, "#2 "), "main", "crash.o");
}

#[test]
#[cfg(target_arch = "x86_64")]
fn trap_is_sigill() {
    let dir = common::workdir("crash", "ill");
    let object = compile(&dir);
    let lines = report(&run(&object, "ill", &[]), libc::SIGILL);
    assert!(
        lines.first().is_some_and(|first| first
            .starts_with("modload: SIGILL (illegal instruction")
            && first.ends_with(", in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "trap_here", "crash.o");
    names(line(&lines, "#1 "), "trap_caller", "crash.o");
}

/// An `int3` raises SIGTRAP with SI_KERNEL, as a general protection fault
/// raises SIGSEGV: the report must call it a breakpoint, and name the
/// function of the int3, which is the function's last instruction (the
/// saved pc is one past it, outside the function).
#[test]
#[cfg(target_arch = "x86_64")]
fn int3_is_a_breakpoint_in_its_function() {
    let dir = common::workdir("crash", "int3");
    let object = compile(&dir);
    let lines = report(&run(&object, "int3", &[]), libc::SIGTRAP);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(
            "modload: SIGTRAP (trace or breakpoint trap: int3 breakpoint instruction), in a module"
        ),
        "{lines:#?}"
    );
    let pc = line(&lines, "pc ");
    names(pc, "breakpoint_here", "crash.o");
    assert!(
        pc.ends_with("(the int3; the saved pc is one past it)"),
        "{pc}"
    );
    names(line(&lines, "#1 "), "breakpoint_caller", "crash.o");
    names(line(&lines, "#2 "), "main", "crash.o");
}

/// A call to a bad address faults outside any module, before the callee
/// could save anything: the caller still shows.
#[test]
fn jump_to_a_bad_address_is_not_in_a_module() {
    let dir = common::workdir("crash", "jump");
    let object = compile(&dir);
    let lines = report(&run(&object, "jump", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with("at address 0x30, not in a module")),
        "{lines:#?}"
    );
    assert_eq!(line(&lines, "pc "), "  pc 0x30  (unmapped)");
    names(line(&lines, "#1 "), "jump_to", "crash.o");
    names(line(&lines, "#2 "), "main", "crash.o");
}

/// A write to a module's constant: the address is named too.
#[test]
fn write_to_module_constant_names_the_data() {
    let dir = common::workdir("crash", "rodata");
    let object = compile(&dir);
    let lines = report(&run(&object, "rodata", &[]), libc::SIGSEGV);
    let first = lines.first().map_or("", String::as_str);
    assert!(
        first.starts_with(
            "modload: SIGSEGV (invalid memory reference: no permission for the access) at address 0x"
        ) && first.ends_with(" (answer+0x0 [crash.o] in .rodata), in a module"),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "overwrite", "crash.o");
    names(line(&lines, "#1 "), "overwrite_answer", "crash.o");
    names(line(&lines, "#2 "), "main", "crash.o");
}

/// A non-canonical address raises a general protection fault, whose
/// siginfo has no address: the report must not make one up.
#[test]
#[cfg(target_arch = "x86_64")]
fn general_protection_fault_has_no_address() {
    let dir = common::workdir("crash", "noncanonical");
    let object = compile(&dir);
    let lines = report(&run(&object, "noncanonical", &[]), libc::SIGSEGV);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(
            "modload: SIGSEGV (invalid memory reference) at an unknown address \
             (a general protection fault), in a module"
        ),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "crash_here", "crash.o");
    names(line(&lines, "#1 "), "caller", "crash.o");
}

/// A stack overflow is reported from the handler's own stack, and the
/// recursion shows as one line with a count, then the frames below it.
#[test]
fn stack_overflow_is_reported_with_the_recursion_folded() {
    let dir = common::workdir("crash", "overflow");
    let object = compile(&dir);
    let lines = report(&run(&object, "overflow", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with(", in a module (a stack overflow)")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "recurse", "crash.o");
    names(line(&lines, "#1 "), "recurse", "crash.o");
    let folded = line(&lines, "... the frame above ");
    // `... the frame above N more times (to #M)`: N frames after #1.
    let numbers: Vec<usize> = folded
        .split(|character: char| !character.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .collect();
    let [repeats, last] = numbers[..] else {
        panic!("{folded}");
    };
    assert!(repeats > 1000, "{folded}");
    assert_eq!(last, repeats + 1, "{folded}");
    names(
        line(&lines, &format!("#{} ", last + 1)),
        "overflow",
        "crash.o",
    );
    names(line(&lines, &format!("#{} ", last + 2)), "main", "crash.o");
    assert!(lines.len() < 20, "{lines:#?}");
}

/// The numbers in `line`, in order.
fn numbers(line: &str) -> Vec<usize> {
    line.split(|character: char| !character.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .collect()
}

/// Mutual recursion (ping and pong calling each other) folds into one line
/// too, so the frames that started it still show.
#[test]
fn mutual_recursion_overflow_is_folded_down_to_main() {
    let dir = common::workdir("crash", "mutual");
    let object = compile(&dir);
    let lines = report(&run(&object, "mutual", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with(", in a module (a stack overflow)")),
        "{lines:#?}"
    );
    let pc = line(&lines, "pc ");
    let (first, second) = match pc.contains(" ping+0x") {
        true => ("pong", "ping"),
        false => ("ping", "pong"),
    };
    names(line(&lines, "#1 "), first, "crash.o");
    names(line(&lines, "#2 "), second, "crash.o");
    // `... the 2 frames above repeat, N more frames (to #M)`.
    let folded = line(&lines, "... the 2 frames above repeat, ");
    let [2, repeats, last] = numbers(folded)[..] else {
        panic!("{folded}");
    };
    assert!(repeats > 1000, "{folded}");
    assert_eq!(last, repeats + 2, "{folded}");
    names(
        line(&lines, &format!("#{} ", last + 1)),
        "ping_pong",
        "crash.o",
    );
    names(line(&lines, &format!("#{} ", last + 2)), "main", "crash.o");
    assert!(lines.len() < 20, "{lines:#?}");
}

/// A cycle longer than the report folds fills the frames it shows; then
/// the last frames, where the recursion started, still show.
#[test]
fn a_cut_backtrace_ends_with_the_bottom_of_the_stack() {
    let dir = common::workdir("crash", "rounds");
    let object = compile(&dir);
    let lines = report(&run(&object, "rounds", &[]), libc::SIGSEGV);
    let last_shown = line(&lines, "#48 ");
    assert!(
        (1..=5).any(|round| last_shown.contains(&format!(" round{round}+0x"))),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("  #49 ")),
        "{lines:#?}"
    );
    let cut = line(&lines, "... ");
    let [hidden, last] = numbers(cut)[..] else {
        panic!("{cut}");
    };
    assert!(
        cut.ends_with(&format!(" more frames not shown (to #{last})")),
        "{cut}"
    );
    assert!(hidden > 1000, "{cut}");
    assert_eq!(last, 48 + hidden, "{cut}");
    // After the cut: the last frames of the recursion, then its start.
    let first_after = line(&lines, &format!("#{} ", last + 1));
    assert!(first_after.contains(" round"), "{lines:#?}");
    let start = lines
        .iter()
        .position(|line| line.contains(" rounds+0x"))
        .unwrap_or_else(|| panic!("no frame in `rounds`: {lines:#?}"));
    let number = |line: &str| numbers(line).first().copied();
    assert!(number(&lines[start]) > Some(last), "{lines:#?}");
    names(&lines[start], "rounds", "crash.o");
    names(&lines[start + 1], "main", "crash.o");
    assert_eq!(
        number(&lines[start + 1]),
        number(&lines[start]).map(|n| n + 1),
        "{lines:#?}"
    );
    assert!(lines.len() < 80, "{lines:#?}");
}

/// Another thread than the one `modload` installed the handler on.
#[test]
fn faults_in_other_threads_are_reported() {
    let dir = common::workdir("crash", "thread");
    let object = compile(&dir);
    let lines = report(&run(&object, "thread", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with("at address 0x40, in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "thread_main", "crash.o");
}

/// A stack overflow in a thread a module started: `modload` gave the thread
/// an alternate signal stack, so the report comes, names the recursing
/// function and its thread's start routine, and the process dies of SIGSEGV.
#[test]
fn stack_overflow_in_a_module_thread_is_reported() {
    let dir = common::workdir("crash", "thread_overflow");
    let object = compile(&dir);
    let lines = report(&run(&object, "thread_overflow", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.starts_with("modload: SIGSEGV")
                && first.ends_with(", in a module (a stack overflow)")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "thread_recurse", "crash.o");
    names(line(&lines, "#1 "), "thread_recurse", "crash.o");
    let folded = line(&lines, "... the frame above ");
    let [repeats, last] = numbers(folded)[..] else {
        panic!("{folded}");
    };
    assert!(repeats > 1000, "{folded}");
    names(
        line(&lines, &format!("#{} ", last + 1)),
        "thread_overflow",
        "crash.o",
    );
}

/// Every thread a module starts has the alternate stack, whether it ends by
/// returning or by `pthread_exit`, and each stack is unmapped when its
/// thread ends: 100 threads one after another leave no mapping behind.
#[test]
fn module_threads_get_an_alternate_stack_and_give_it_back() {
    let dir = common::workdir("crash", "thread_stacks");
    let object = compile(&dir);
    let output = run(&object, "thread_stacks", &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let printed: Vec<&str> = stdout.lines().collect();
    let ["mode thread_stacks", counts] = printed[..] else {
        panic!("{stdout}");
    };
    let [100, with_stack, gained] = numbers(counts)[..] else {
        panic!("{stdout}");
    };
    assert_eq!(with_stack, 100, "{stdout}");
    // A stack left behind per thread would add 100 or more (its guard page
    // and the stack are two mappings); the few others are glibc's.
    assert!(gained < 20, "{stdout}");
}
