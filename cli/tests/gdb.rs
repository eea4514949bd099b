//! GDB on `modload run`: two C modules built with `-g`, the first calling
//! the second. A breakpoint set by name before anything loads (pending) must
//! stop in the second module's function at its source line, with the caller
//! in the first module on the stack; at exit, both modules unregister from
//! GDB's JIT interface. Needs `gdb` (scripts/install-deps.sh, group `debug`):
//! the test fails without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use modload_tests::{compile_c, fixture, CModel};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// The fixture's module, compiled with debug info and frame pointers.
fn module(name: &str) -> PathBuf {
    compile_c(
        &fixture(&format!("gdb/{name}")),
        CModel::Pic,
        &["-O0", "-g", "-fno-omit-frame-pointer"],
    )
}

/// The 1-based number of the line of `source` that holds `marker`.
fn line_of(source: &Path, marker: &str) -> usize {
    let text = std::fs::read_to_string(source).expect("read the fixture");
    let index = text
        .lines()
        .position(|line| line.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in {}", source.display()));
    index + 1
}

/// Runs `gdb -batch` with `commands` on `modload run ARGS`, bounded in time.
fn gdb(commands: &[&str], modload_args: &[&str]) -> String {
    let mut command = Command::new("timeout");
    command.args(["120", "gdb", "-batch", "-nx"]);
    for each in commands {
        command.args(["-ex", each]);
    }
    let output = command
        .arg("--args")
        .arg(MODLOAD)
        .arg("run")
        .args(modload_args)
        .output()
        .expect("run gdb (scripts/install-deps.sh installs it, group `debug`)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "gdb failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[test]
fn a_pending_breakpoint_stops_in_the_second_module_with_the_caller_in_the_first() {
    let caller = module("gdb_caller.c");
    let callee = module("gdb_callee.c");
    let caller_line = line_of(&fixture("gdb/gdb_caller.c"), "CALLER LINE");
    let callee_line = line_of(&fixture("gdb/gdb_callee.c"), "CALLEE LINE");
    let caller_path = caller.to_str().expect("UTF-8 path");
    let callee_path = callee.to_str().expect("UTF-8 path");

    let output = gdb(
        &[
            "set breakpoint pending on",
            "set confirm off",
            "break gdb_scale",
            "run",
            "bt",
            // Then every change to the JIT list until the process ends: the
            // two unloads at exit.
            "break __jit_debug_register_code",
            "continue",
            "print __jit_debug_descriptor.action_flag",
            "continue",
            "print __jit_debug_descriptor.action_flag",
            "continue",
        ],
        &[caller_path, callee_path],
    );

    let stop = "Breakpoint 1, gdb_scale (value=7) at ";
    let stop_line = output
        .lines()
        .find(|line| line.starts_with(stop))
        .unwrap_or_else(|| panic!("no stop in gdb_scale:\n{output}"));
    assert!(
        stop_line.ends_with(&format!("gdb_callee.c:{callee_line}")),
        "the stop names gdb_callee.c:{callee_line}: {stop_line}\n{output}"
    );
    let frame0 = output
        .lines()
        .find(|line| line.starts_with("#0 "))
        .unwrap_or_else(|| panic!("no backtrace:\n{output}"));
    assert!(
        frame0.contains("gdb_scale (value=7) at ")
            && frame0.ends_with(&format!("gdb_callee.c:{callee_line}")),
        "{frame0}\n{output}"
    );
    let frame1 = output
        .lines()
        .find(|line| line.starts_with("#1 "))
        .unwrap_or_else(|| panic!("no caller frame:\n{output}"));
    assert!(
        frame1.contains(" in main () at ")
            && frame1.ends_with(&format!("gdb_caller.c:{caller_line}")),
        "the caller is main in the first module: {frame1}\n{output}"
    );
    // GDB prints `$N = 2` for JitAction::Unregister, once per module.
    let unregistrations = output
        .lines()
        .filter(|line| line.starts_with('$') && line.ends_with(" = 2"))
        .count();
    assert_eq!(
        unregistrations, 2,
        "both modules unregister at exit:\n{output}"
    );
    assert!(
        output.contains("exited normally"),
        "gdb_scale(7) is 21, so the program exits with 0:\n{output}"
    );
}

#[test]
fn with_gdb_and_no_debugger_the_program_runs_as_without() {
    let caller = module("gdb_caller.c");
    let callee = module("gdb_callee.c");
    for options in [&["--gdb"][..], &[]] {
        let output = Command::new(MODLOAD)
            .arg("run")
            .args(options)
            .arg(&caller)
            .arg(&callee)
            .output()
            .expect("run modload");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{options:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{options:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
