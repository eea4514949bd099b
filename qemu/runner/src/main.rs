//! `modload-qemu` (`cargo xtask`): builds the test kernel for x86_64 or
//! AArch64 with its modules, boots it in QEMU and turns the kernel's report
//! into pass or fail.
//!
//! ```text
//! cargo xtask run [--arch x86_64|aarch64] [--timeout SECONDS]   watch one scenario
//! cargo xtask test [--timeout SECONDS]                          both, fail on any failed or missing step
//! cargo xtask debug [--arch x86_64|aarch64]                     GDB on QEMU's gdbstub (src/debug.rs)
//! cargo xtask debug-test [--arch ...] [--timeout SECONDS]       GDB breaks in a module by name, both by default
//! ```

mod archive;
mod boot;
mod build;
mod debug;
mod ksyms;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use build::Arch;

const USAGE: &str = "usage: cargo xtask run [--arch x86_64|aarch64] [--timeout SECONDS]
       cargo xtask test [--timeout SECONDS]
       cargo xtask debug [--arch x86_64|aarch64]
       cargo xtask debug-test [--arch x86_64|aarch64] [--timeout SECONDS]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("modload-qemu: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<bool, String> {
    let mut command = None;
    let mut arches = Vec::new();
    let mut timeout = Duration::from_secs(120);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "run" | "test" | "debug" | "debug-test" if command.is_none() => command = Some(arg),
            "--arch" => {
                let name = args.next().ok_or("--arch needs a value")?;
                arches.push(Arch::parse(&name).ok_or_else(|| format!("unknown arch {name}"))?);
            }
            "--timeout" => {
                let seconds = args.next().ok_or("--timeout needs a value")?;
                let seconds: u64 = seconds
                    .parse()
                    .map_err(|_| format!("bad timeout {seconds}"))?;
                timeout = Duration::from_secs(seconds);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => return Err(format!("unexpected argument {other}\n{USAGE}")),
        }
    }
    let command = command.ok_or(USAGE)?;
    if arches.is_empty() {
        arches = match command.as_str() {
            "test" | "debug-test" => vec![Arch::X86_64, Arch::Aarch64],
            _ => vec![Arch::X86_64],
        };
    }
    match command.as_str() {
        "debug" => return debug::interactive(arches.first().copied().unwrap_or(Arch::X86_64)),
        "debug-test" => return debug_test(&arches, timeout),
        _ => {}
    }
    let mut all_passed = true;
    for arch in arches {
        println!("== {}: building modules and kernel", arch.name());
        let kernel = build::kernel_with_modules(arch)?;
        println!("== {}: booting {}", arch.name(), kernel.display());
        let outcome = boot::boot(arch, &kernel, timeout)?;
        match report::verdict(&outcome.console, outcome.timed_out) {
            Ok(summary) => println!("== {}: PASS ({summary})", arch.name()),
            Err(problems) => {
                all_passed = false;
                println!("== {}: FAIL", arch.name());
                for problem in problems {
                    println!("   {problem}");
                }
            }
        }
    }
    Ok(all_passed)
}

/// `cargo xtask debug-test`: the GDB check on each machine.
fn debug_test(arches: &[Arch], timeout: Duration) -> Result<bool, String> {
    let mut all_passed = true;
    for &arch in arches {
        all_passed &= debug::check(arch, timeout)?;
    }
    Ok(all_passed)
}
