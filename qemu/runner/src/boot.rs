//! Boots a kernel in QEMU, headless, echoing its console and keeping it for
//! the report; stops it at the timeout.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build::Arch;

/// What the console showed, and whether the timeout cut it short.
pub struct Outcome {
    pub console: String,
    pub timed_out: bool,
}

/// QEMU for `arch`'s machine, before the console and kernel options.
pub fn machine(arch: Arch) -> Command {
    match arch {
        Arch::X86_64 => {
            let mut command = Command::new("qemu-system-x86_64");
            command.args([
                "-m",
                "256M",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]);
            command
        }
        Arch::Aarch64 => {
            let mut command = Command::new("qemu-system-aarch64");
            command.args(["-M", "virt", "-cpu", "cortex-a57", "-m", "512M"]);
            command
        }
    }
}

fn qemu(arch: Arch, kernel: &Path) -> Command {
    let mut command = machine(arch);
    command
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

pub fn boot(arch: Arch, kernel: &Path, timeout: Duration) -> Result<Outcome, String> {
    let mut child = qemu(arch, kernel)
        .spawn()
        .map_err(|error| format!("cannot start QEMU for {}: {error}", arch.name()))?;
    let mut stdout = child.stdout.take().ok_or("QEMU has no stdout")?;
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count) = stdout.read(&mut buffer) {
            if count == 0 || sender.send(buffer[..count].to_vec()).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut console = Vec::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match receiver.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(bytes) => {
                print!("{}", String::from_utf8_lossy(&bytes));
                console.extend_from_slice(&bytes);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() >= timeout {
                    timed_out = true;
                    break;
                }
            }
        }
    }
    if timed_out {
        // The kernel hung: stop QEMU; its output so far is kept.
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    Ok(Outcome {
        console: String::from_utf8_lossy(&console).into_owned(),
        timed_out,
    })
}
