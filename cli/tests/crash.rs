//! Crash reports of `modload run`: C modules that fault on purpose, run
//! through the binary; the report on stderr must name the signal, the
//! faulting function and its module, and the callers, and the process must
//! die of the signal.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// Each mode faults in a function called by another function of the module.
const FAULTS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) int crash_here(int *pointer) { return *pointer + 1; }
__attribute__((noinline)) int caller(long address) { return crash_here((int *)address) * 2; }

__attribute__((noinline)) int divide(int a, int b) { return a / b; }
__attribute__((noinline)) int divide_caller(int zero) { return divide(7, zero) + 1; }

__attribute__((noinline)) void trap_here(void) { __builtin_trap(); }
__attribute__((noinline)) int trap_caller(void) { trap_here(); return 3; }

__attribute__((noinline)) int jump_to(long address) { return ((int (*)(void))address)() + 1; }

static void *thread_main(void *pointer) { *(int *)pointer = 1; return 0; }

static const char *mode = "";
volatile int sink;

__attribute__((constructor)) static void early(void) {
    if (getenv("CRASH_IN_CONSTRUCTOR"))
        sink = caller(0x20);
}

int main(int argc, char **argv) {
    mode = argc > 1 ? argv[1] : "";
    printf("mode %s\n", mode);
    fflush(stdout);
    if (!strcmp(mode, "segv")) return caller(0x10) + 1;
    if (!strcmp(mode, "fpe")) return divide_caller(argc - 2) + 1;
    if (!strcmp(mode, "ill")) return trap_caller() + 1;
    if (!strcmp(mode, "jump")) return jump_to(0x30) + 1;
    if (!strcmp(mode, "thread")) {
        pthread_t thread;
        pthread_create(&thread, 0, thread_main, (void *)0x40);
        pthread_join(thread, 0);
    }
    return 0;
}
"#;

/// Compiles `source` to `dir/name.o` with frame pointers, as a crash report
/// needs for its backtrace.
fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    let object = dir.join(format!("{name}.o"));
    std::fs::write(&c, source).expect("write the C source");
    let output = Command::new("gcc")
        .args([
            "-c",
            "-O1",
            "-fno-omit-frame-pointer",
            "-fno-optimize-sibling-calls",
        ])
        .arg(&c)
        .arg("-o")
        .arg(&object)
        .output()
        .expect("gcc must be installed to run these tests");
    assert!(
        output.status.success(),
        "gcc failed on {name}.c: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    object
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
    let object = compile(&dir, "faults", FAULTS);
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
    names(line(&lines, "pc "), "crash_here", "faults.o");
    names(line(&lines, "#1 "), "caller", "faults.o");
    names(line(&lines, "#2 "), "main", "faults.o");
    // Then modload's own frames, outside modules.
    assert!(line(&lines, "#3 ").ends_with("(modload)"), "{lines:#?}");
}

#[test]
fn constructors_are_covered() {
    let dir = common::workdir("crash", "constructor");
    let object = compile(&dir, "faults", FAULTS);
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
    names(line(&lines, "pc "), "crash_here", "faults.o");
    names(line(&lines, "#1 "), "caller", "faults.o");
    names(line(&lines, "#2 "), "early", "faults.o");
}

#[test]
#[cfg(target_arch = "x86_64")]
fn divide_by_zero_is_sigfpe() {
    let dir = common::workdir("crash", "fpe");
    let object = compile(&dir, "faults", FAULTS);
    let lines = report(&run(&object, "fpe", &[]), libc::SIGFPE);
    assert!(
        lines.first().is_some_and(|first| first.starts_with(
            "modload: SIGFPE (arithmetic exception: integer divide by zero) at address 0x"
        ) && first.ends_with(", in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "divide", "faults.o");
    names(line(&lines, "#1 "), "divide_caller", "faults.o");
    names(line(&lines, "#2 "), "main", "faults.o");
}

#[test]
#[cfg(target_arch = "x86_64")]
fn trap_is_sigill() {
    let dir = common::workdir("crash", "ill");
    let object = compile(&dir, "faults", FAULTS);
    let lines = report(&run(&object, "ill", &[]), libc::SIGILL);
    assert!(
        lines.first().is_some_and(|first| first
            .starts_with("modload: SIGILL (illegal instruction")
            && first.ends_with(", in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "trap_here", "faults.o");
    names(line(&lines, "#1 "), "trap_caller", "faults.o");
}

/// A call to a bad address faults outside any module, before the callee
/// could save anything: the caller still shows.
#[test]
fn jump_to_a_bad_address_is_not_in_a_module() {
    let dir = common::workdir("crash", "jump");
    let object = compile(&dir, "faults", FAULTS);
    let lines = report(&run(&object, "jump", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with("at address 0x30, not in a module")),
        "{lines:#?}"
    );
    assert_eq!(line(&lines, "pc "), "  pc 0x30  (unmapped)");
    names(line(&lines, "#1 "), "jump_to", "faults.o");
    names(line(&lines, "#2 "), "main", "faults.o");
}

/// Another thread than the one `modload` installed the handler on.
#[test]
fn faults_in_other_threads_are_reported() {
    let dir = common::workdir("crash", "thread");
    let object = compile(&dir, "faults", FAULTS);
    let lines = report(&run(&object, "thread", &[]), libc::SIGSEGV);
    assert!(
        lines
            .first()
            .is_some_and(|first| first.ends_with("at address 0x40, in a module")),
        "{lines:#?}"
    );
    names(line(&lines, "pc "), "thread_main", "faults.o");
}
