//! GDB on the test kernels, through QEMU's gdbstub. The kernel is built with
//! its `gdb` feature: each module it loads is registered with GDB's JIT
//! interface, so GDB sets breakpoints in modules by name (pending until the
//! module loads) and shows their source lines.
//!
//! - `cargo xtask debug [--arch aarch64]`: GDB (`gdb-multiarch`) with the
//!   kernel's symbols, connected to a QEMU stopped at its first instruction.
//!   GDB starts QEMU itself (`target remote | qemu ... -gdb stdio`), so
//!   quitting GDB stops QEMU and Ctrl-C interrupts the kernel. The kernel's
//!   console goes to `target/qemu/<arch>/debug-console.log`.
//! - `cargo xtask debug-test`: on both kernels, `gdb-multiarch -batch` sets
//!   pending breakpoints on `b_compute` (module B, Rust, loaded through the
//!   staged API in step 2) and `f_square` (module F), which module E's
//!   `e_call` calls in step 11, continues, and checks that it stops in
//!   `b_compute`, then that the stop names `f_square` at its line of `f.c`
//!   and that `bt` shows `e_call` at its line of `e.c` as the caller.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot;
use crate::build::{self, Arch};

/// The debugger, for both machines.
const GDB: &str = "gdb-multiarch";

/// The kernel's cargo feature that registers modules with GDB.
const FEATURES: &[&str] = &["gdb"];

/// A function of B, the Rust module loaded through the staged API in step 2:
/// the check breaks there first, so every way the kernel loads a module is
/// seen registered.
const FIRST_BREAK_AT: &str = "b_compute";
/// The function the check breaks on, its module's source, and its caller.
const BREAK_AT: (&str, &str) = ("f_square", "f.c");
const CALLER: (&str, &str) = ("e_call", "e.c");

/// QEMU's options after the machine's: no display, the console to a file,
/// stopped before the first instruction for the debugger.
fn qemu(arch: Arch, kernel: &Path, console: &Path, gdbstub: &str) -> Command {
    let mut command = boot::machine(arch);
    command
        .args(["-display", "none", "-monitor", "none", "-no-reboot", "-S"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-gdb", gdbstub])
        .arg("-kernel")
        .arg(kernel);
    command
}

fn console_log(arch: Arch) -> PathBuf {
    build::output_dir(arch).join("debug-console.log")
}

/// `word` quoted for `sh`, which runs the command of GDB's `target remote |`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `cargo xtask debug`: replaces this process with GDB, which starts QEMU.
/// Returns only if GDB cannot start.
pub fn interactive(arch: Arch) -> Result<bool, String> {
    println!(
        "== {}: building modules and kernel (feature gdb)",
        arch.name()
    );
    let kernel = build::kernel_with_features(arch, FEATURES)?;
    let console = console_log(arch);
    let qemu = qemu(arch, &kernel, &console, "stdio");
    let pipe = std::iter::once(qemu.get_program())
        .chain(qemu.get_args())
        .map(|word| shell_quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "== {}: GDB starts QEMU, stopped at its first instruction; the console is in {}",
        arch.name(),
        console.display()
    );
    println!("   try: break f_square, continue, bt (module functions resolve as modules load)");
    let error = Command::new(GDB)
        .arg("-q")
        .args(["-ex", "set breakpoint pending on"])
        .arg("-ex")
        .arg(format!("file {}", kernel.display()))
        .arg("-ex")
        .arg(format!("target remote | exec {pipe}"))
        .exec();
    Err(format!("cannot start {GDB}: {error}"))
}

/// A free TCP port on the loopback interface for QEMU's gdbstub.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))
}

/// The 1-based line of `qemu/modules/<file>` where `function` is defined.
fn definition_line(file: &str, function: &str) -> Result<usize, String> {
    let path = build::root().join("qemu/modules").join(file);
    let source =
        std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    source
        .lines()
        .position(|line| line.contains(&format!(" {function}(")) && line.contains('{'))
        .map(|index| index + 1)
        .ok_or_else(|| format!("no definition of {function} in {}", path.display()))
}

/// Waits for `child` until `deadline`, then kills it. Returns whether it
/// finished in time.
fn wait_until(child: &mut Child, deadline: Instant) -> bool {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Reads `pipe` to its end on a thread of its own; the text is the thread's result.
fn drain<P: Read + Send + 'static>(pipe: Option<P>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// `cargo xtask debug-test` for one machine: true if GDB stopped where it
/// should, with the caller on the stack.
pub fn check(arch: Arch, timeout: Duration) -> Result<bool, String> {
    println!(
        "== {}: building modules and kernel (feature gdb)",
        arch.name()
    );
    let kernel = build::kernel_with_features(arch, FEATURES)?;
    let console = console_log(arch);
    let port = free_port()?;
    let mut qemu = qemu(arch, &kernel, &console, &format!("tcp:127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start QEMU for {}: {error}", arch.name()))?;
    let deadline = Instant::now() + timeout;
    println!(
        "== {}: {GDB} -batch on QEMU's gdbstub: break {FIRST_BREAK_AT} and {}, continue twice, bt",
        arch.name(),
        BREAK_AT.0
    );
    let gdb = Command::new(GDB)
        .args(["-batch", "-nx"])
        .args(["-ex", "set pagination off"])
        // GDB reads a JIT object lazily from target memory; its DWARF
        // indexing threads once (1 run in about 25) read F's location lists
        // wrong. On GDB's own thread it did not fail in 20 runs on each machine.
        .args(["-ex", "maint set worker-threads 0"])
        .args(["-ex", "set confirm off"])
        .args(["-ex", "set breakpoint pending on"])
        // QEMU may still be opening its port: GDB retries for a while.
        .args(["-ex", "set tcp auto-retry on"])
        .args(["-ex", "set tcp connect-timeout 30"])
        .arg("-ex")
        .arg(format!("file {}", kernel.display()))
        .arg("-ex")
        .arg(format!("target remote 127.0.0.1:{port}"))
        .arg("-ex")
        .arg(format!("break {FIRST_BREAK_AT}"))
        .arg("-ex")
        .arg(format!("break {}", BREAK_AT.0))
        .args(["-ex", "continue"])
        // B is called again in later steps.
        .args(["-ex", "delete 1"])
        .args(["-ex", "continue"])
        .args(["-ex", "bt 3"])
        .args(["-ex", "kill"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut gdb = match gdb {
        Ok(gdb) => gdb,
        Err(error) => {
            let _ = qemu.kill();
            let _ = qemu.wait();
            return Err(format!("cannot start {GDB}: {error}"));
        }
    };
    // Drained as GDB writes: a full pipe would stall it until the deadline.
    let stdout = drain(gdb.stdout.take());
    let stderr = drain(gdb.stderr.take());
    let finished = wait_until(&mut gdb, deadline);
    // GDB is gone (exited or killed), so both pipes reach their end.
    let output = stdout.join().unwrap_or_default();
    let errors = stderr.join().unwrap_or_default();
    let _ = qemu.kill();
    let _ = qemu.wait();
    print!("{output}");
    let problems = problems(&output, finished)?;
    if problems.is_empty() {
        println!("== {}: PASS (GDB broke in a module by name)", arch.name());
        Ok(true)
    } else {
        println!("== {}: FAIL", arch.name());
        for problem in problems {
            println!("   {problem}");
        }
        println!("   GDB's stderr:\n{errors}");
        println!("   kernel console: {}", console.display());
        Ok(false)
    }
}

/// What is wrong with GDB's output: the stop and the first two frames must
/// name the functions at their source lines.
fn problems(output: &str, finished: bool) -> Result<Vec<String>, String> {
    let (function, file) = BREAK_AT;
    let (caller, caller_file) = CALLER;
    let line = definition_line(file, function)?;
    let caller_line = definition_line(caller_file, caller)?;
    let mut problems = Vec::new();
    if !finished {
        problems.push("GDB did not finish before the timeout".to_owned());
    }
    // B has no line table to show; its name is enough.
    let first = output
        .lines()
        .find(|each| each.starts_with("Breakpoint 1, "));
    if !first.is_some_and(|stop| stop.contains(&format!("{FIRST_BREAK_AT} ("))) {
        problems.push(format!(
            "GDB did not stop first in {FIRST_BREAK_AT}: {first:?}"
        ));
    }
    let stop = output
        .lines()
        .find(|each| each.starts_with(&format!("Breakpoint 2, {function} (")));
    match stop {
        Some(stop) if stop.ends_with(&format!("/{file}:{line}")) => {}
        Some(stop) => problems.push(format!("the stop is not at {file}:{line}: {stop}")),
        None => problems.push(format!("GDB never stopped in {function}")),
    }
    let frame = |number: u32| {
        output
            .lines()
            .find(|each| each.starts_with(&format!("#{number} ")))
    };
    match frame(0) {
        Some(top)
            if top.contains(&format!(" {function} ("))
                && top.ends_with(&format!("/{file}:{line}")) => {}
        other => problems.push(format!(
            "frame #0 is not {function} at {file}:{line}: {other:?}"
        )),
    }
    match frame(1) {
        Some(next)
            if next.contains(&format!(" in {caller} ("))
                && next.ends_with(&format!("/{caller_file}:{caller_line}")) => {}
        other => problems.push(format!(
            "frame #1 is not {caller} at {caller_file}:{caller_line}: {other:?}"
        )),
    }
    Ok(problems)
}
