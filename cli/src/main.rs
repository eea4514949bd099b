//! `modload`: the host command-line tool for the modload loader.
//!
//! `modload run a.o b.o -- args` loads relocatable objects into this process
//! and calls their `main`; `modload plan x.o` prints the layout the loader
//! plans for an object; `modload link` links objects for target addresses
//! and writes their images. See [`args::USAGE`].
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod args;
mod atomics;
mod copies;
mod dl;
mod libsearch;
mod link;
mod order;
mod plan;
mod run;
mod sign;

use std::io::Write as _;

use args::Command;

/// Reads every object named on the command line, keyed by its path as given.
pub fn read_objects(paths: &[std::path::PathBuf]) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    paths
        .iter()
        .map(|path| {
            let name = path.to_string_lossy().into_owned();
            std::fs::read(path)
                .map(|bytes| (name.clone(), bytes))
                .map_err(|error| Failure::io(&name, &error))
        })
        .collect()
}

/// Exit status for errors in loading or running.
const EXIT_FAILURE: i32 = 1;
/// Exit status for command-line mistakes.
const EXIT_USAGE: i32 = 2;

/// Why a command failed: one line for stderr, and the exit status.
#[derive(Debug)]
pub struct Failure {
    message: String,
    status: i32,
}

impl Failure {
    /// A failure with this message.
    pub fn message(message: String) -> Self {
        Self {
            message,
            status: EXIT_FAILURE,
        }
    }

    /// A command-line mistake.
    pub fn usage(message: String) -> Self {
        Self {
            message,
            status: EXIT_USAGE,
        }
    }

    /// An I/O error about `what` (usually a file name).
    pub fn io(what: &str, error: &std::io::Error) -> Self {
        Self::message(format!("{what}: {error}"))
    }

    /// A loader error; its message already names the module and the place.
    pub fn load(error: &modload::LoadError) -> Self {
        Self::message(error.to_string())
    }
}

fn main() {
    let result = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => print_usage(),
        Ok(Command::Run(run)) => run::command(&run),
        Ok(Command::Plan(plan)) => plan::command(&plan),
        Ok(Command::Link(link)) => link::command(&link),
        Ok(Command::Keygen(keygen)) => sign::keygen_command(&keygen),
        Ok(Command::Sign(sign)) => sign::sign_command(&sign),
        Err(message) => Err(Failure::usage(message)),
    };
    if let Err(failure) = result {
        // One line per error, so scripts can show or grep it whole; messages
        // from the dynamic linker or the OS are not guaranteed to be one line.
        let message = failure.message.replace(['\n', '\r'], " ");
        // Nothing useful can be done if stderr is gone; the status still tells.
        let _ = writeln!(std::io::stderr(), "modload: {message}");
        std::process::exit(failure.status);
    }
}

fn print_usage() -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(args::USAGE.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::io("cannot write the usage text", &error))
}
