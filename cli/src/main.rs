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
mod crash;
mod debugger;
mod dl;
mod json;
mod libsearch;
mod link;
mod order;
mod perf_map;
mod plan;
mod run;
mod sign;

use std::io::Write as _;

use args::Command;

/// Reads every object named on the command line, keyed by its path as given.
pub fn read_objects(paths: &[std::path::PathBuf]) -> Result<Vec<(String, ObjectBytes)>, Failure> {
    paths
        .iter()
        .map(|path| {
            let name = path.to_string_lossy().into_owned();
            ObjectBytes::read(path)
                .map(|bytes| (name.clone(), bytes))
                .map_err(|error| Failure::io(&name, &error))
        })
        .collect()
}

/// An object file's bytes: the file mapped read-only where it can be, else
/// read into memory (an empty file, a pipe).
///
/// Mapping rather than reading is for speed: the loader reads the parts it
/// needs straight from the page cache, with no copy and no fault per page of
/// a buffer (a 1.3 MB object took ~330 of them). Like the dynamic linker's
/// mapping of a library, the bytes are only valid while nobody shrinks the
/// file: truncating an object while `modload` reads it is not supported.
pub struct ObjectBytes(Bytes);

enum Bytes {
    Mapped { start: *const u8, len: usize },
    Read(Vec<u8>),
}

impl ObjectBytes {
    /// The contents of the file at `path`.
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let metadata = file.metadata()?;
        let len = usize::try_from(metadata.len()).unwrap_or(0);
        if !metadata.is_file() || len == 0 {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes)?;
            return Ok(Self(Bytes::Read(bytes)));
        }
        use std::os::fd::AsRawFd as _;
        // SAFETY: a new private read-only mapping of a file we opened; it
        // touches no existing memory. `MAP_POPULATE` maps every page that is
        // in the page cache now, so reading it later takes no page faults.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return std::fs::read(path).map(|bytes| Self(Bytes::Read(bytes)));
        }
        Ok(Self(Bytes::Mapped {
            start: start.cast_const().cast::<u8>(),
            len,
        }))
    }

    /// The bytes, as a slice.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: `start` is a live read-only mapping of `len` bytes,
            // unmapped only when `self` drops.
            Bytes::Mapped { start, len } => unsafe { std::slice::from_raw_parts(*start, *len) },
            Bytes::Read(bytes) => bytes,
        }
    }
}

impl std::ops::Deref for ObjectBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for ObjectBytes {
    fn drop(&mut self) {
        if let Bytes::Mapped { start, len } = self.0 {
            // SAFETY: our own mapping; no slice of it outlives `self`.
            unsafe { libc::munmap(start.cast_mut().cast::<libc::c_void>(), len) };
        }
    }
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

/// The last part of a module's name: `loop.o` for `build/loop.o`, as perf
/// maps and crash reports show it.
fn module_file_name(module_name: &str) -> &str {
    module_name.rsplit('/').next().unwrap_or(module_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_file_names() {
        assert_eq!(module_file_name("build/x/loop.o"), "loop.o");
        assert_eq!(module_file_name("loop.o"), "loop.o");
        assert_eq!(module_file_name("dir/a.o+2"), "a.o+2");
    }
}
