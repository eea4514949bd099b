//! What the command-line test files share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test, so tests can run in parallel. Removed when
/// the test passes; kept when it fails, to look at the objects.
pub struct WorkDir(PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `modload-<suite>-<pid>-<test>` in the temporary directory, empty.
pub fn workdir(suite: &str, test: &str) -> WorkDir {
    let dir = std::env::temp_dir().join(format!("modload-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    WorkDir(dir)
}

/// Compiles the C file `source` to `object` with `gcc -c` and `flags`,
/// failing the test with gcc's message if it fails; returns `object`.
pub fn gcc(source: &Path, object: PathBuf, flags: &[&str]) -> PathBuf {
    compile_with("gcc", source, object, flags)
}

/// Compiles `source` to `object` with `driver -c` (gcc, g++, clang...) and
/// `flags`, failing the test with the driver's message if it fails;
/// returns `object`.
pub fn compile_with(driver: &str, source: &Path, object: PathBuf, flags: &[&str]) -> PathBuf {
    let output = Command::new(driver)
        .arg("-c")
        .args(flags)
        .arg(source)
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {driver}: {error}"));
    assert!(
        output.status.success(),
        "{driver} {flags:?} {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    object
}
