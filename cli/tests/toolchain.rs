//! What real C and C++ objects expect from `modload run` on the host: `-l
//! NAME` finds what gcc and g++ link for `-lNAME` (libstdc++ in g++'s own
//! directory, linker scripts, empty compatibility archives), and `-fno-pic`
//! objects that read libc's data get copies within reach, as copy
//! relocations give a non-PIE executable. Each program's output, error
//! output and exit status must be those of the same objects linked by gcc.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use modload_tests::fixture;

mod common;

use common::{workdir, WorkDir};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// Compiles every `.c` or `.cpp` file of fixture directory `name` into
/// `dir` with `driver` and `flags`; returns the objects in name order.
fn compile_fixture(dir: &Path, name: &str, driver: &str, flags: &[&str]) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(fixture(name))
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "c" || extension == "cpp")
        })
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no sources in fixture {name}");
    sources
        .iter()
        .map(|source| {
            let stem = source.file_stem().expect("a file name");
            common::compile_with(driver, source, dir.join(stem).with_extension("o"), flags)
        })
        .collect()
}

/// Links `objects` into `dir/native` with `driver`, `link_flags` and `-l`
/// for each of `libraries`.
fn link_native(
    dir: &Path,
    driver: &str,
    objects: &[PathBuf],
    link_flags: &[&str],
    libraries: &[&str],
) -> PathBuf {
    let program = dir.join("native");
    let output = Command::new(driver)
        .args(link_flags)
        .args(objects)
        .args(libraries.iter().map(|library| format!("-l{library}")))
        .arg("-o")
        .arg(&program)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {driver}: {error}"));
    assert!(
        output.status.success(),
        "{driver} link: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    program
}

fn run_native(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run the native program")
}

fn run_modload(objects: &[PathBuf], libraries: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new(MODLOAD);
    command.arg("run").args(objects);
    for library in libraries {
        command.args(["-l", library]);
    }
    command
        .arg("--")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run the modload binary")
}

/// Runs the program both ways with `args` and checks that stdout, stderr
/// and the exit status agree; returns the native stdout.
fn assert_same(
    native: &Path,
    objects: &[PathBuf],
    libraries: &[&str],
    args: &[&str],
    what: &str,
) -> String {
    let expected = run_native(native, args);
    let actual = run_modload(objects, libraries, args);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(
        text(&actual.stdout),
        text(&expected.stdout),
        "{what} {args:?}: stdout differs; modload's stderr: {}",
        text(&actual.stderr)
    );
    assert_eq!(
        text(&actual.stderr),
        text(&expected.stderr),
        "{what} {args:?}: stderr differs"
    );
    assert_eq!(
        actual.status.code(),
        expected.status.code(),
        "{what} {args:?}: exit status differs"
    );
    text(&expected.stdout)
}

fn check_cxx_program(dir: &WorkDir, flags: &[&str]) {
    let objects = compile_fixture(dir, "cxx_prog", "g++", flags);
    assert!(objects.len() >= 2, "the program has several files");
    let native = link_native(dir, "g++", &objects, &["-no-pie"], &[]);
    let what = format!("g++ {flags:?}");
    let out = assert_same(
        &native,
        &objects,
        &["stdc++"],
        &["zeta", "alpha", "42"],
        &what,
    );
    // The native run proves the fixture does what the comparison relies on.
    assert!(
        out.contains("square=4 circle=3.25 square=0.25 total=7.5"),
        "{out}"
    );
    assert!(out.contains("strings abc\ncount -1"), "{out}");
    assert_same(&native, &objects, &["stdc++"], &["7", "b"], &what);
}

/// libstdc++.so lives in g++'s private directory: `-l stdc++` must find it
/// there. Objects built with `-fno-use-cxa-atexit` register their static
/// destructors with `atexit`, so they need no `__dso_handle`.
#[test]
fn cxx_program_runs_with_libstdcxx_from_gxx_directory() {
    let dir = workdir("toolchain", "cxx_atexit");
    check_cxx_program(&dir, &["-O2", "-fPIC", "-fno-use-cxa-atexit"]);
}

/// The same program as g++ builds it by default: `__cxa_atexit` with the
/// module's `__dso_handle`.
#[test]
fn cxx_program_runs_as_gxx_builds_it() {
    let dir = workdir("toolchain", "cxx_default");
    check_cxx_program(&dir, &["-O2", "-fPIC"]);
}

/// `-fno-pic` C++ reads `std::cout` with `R_X86_64_32`: it gets a copy
/// below 2 GiB, which libstdc++ uses too.
#[test]
fn nopic_cxx_program_reaches_std_cout_through_a_copy() {
    let dir = workdir("toolchain", "cxx_nopic");
    check_cxx_program(&dir, &["-O2", "-fno-pic", "-fno-use-cxa-atexit"]);
}

/// zlib through `-l z`, libm's `cbrt`, and threads with `-l pthread`, which
/// names an empty archive since glibc 2.34 (and must be no error).
#[test]
fn libraries_found_as_the_linker_finds_them() {
    let dir = workdir("toolchain", "libs");
    let libraries = ["z", "m", "pthread"];
    for flags in [&["-O2", "-fPIC"][..], &["-O2", "-fno-pic"][..]] {
        let objects = compile_fixture(&dir, "libs_prog", "gcc", flags);
        let native = link_native(&dir, "gcc", &objects, &["-no-pie"], &libraries);
        let out = assert_same(&native, &objects, &libraries, &[], "libs");
        assert!(out.contains("cbrt 3 crc 9e0867c8"), "{out}");
    }
    // glibc's libc.so, libm.so are linker scripts; libdl and librt empty
    // archives: all of them as `-l` too.
    let objects = compile_fixture(&dir, "libs_prog", "gcc", &["-O2", "-fPIC"]);
    let native = link_native(&dir, "gcc", &objects, &[], &["z", "c", "m", "dl", "rt"]);
    assert_same(
        &native,
        &objects,
        &["z", "c", "m", "dl", "rt"],
        &[],
        "scripts",
    );
}

#[test]
fn missing_library_names_the_search_path() {
    let dir = workdir("toolchain", "missing");
    let objects = compile_fixture(&dir, "libs_prog", "gcc", &["-O2", "-fPIC"]);
    let output = run_modload(&objects, &["no-such-library-anywhere"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("libno-such-library-anywhere.so") && stderr.contains("search path"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A `-fno-pic` program that reads `stderr`, `stdout`, `optarg`, `optind`
/// and `environ` with 32-bit relocations, as gcc's non-PIE link runs it:
/// getopt's writes, setenv's new `environ` and freopen's `stdout` must be
/// what the program sees, and `strcmp`'s address, taken with
/// `R_X86_64_32S`, must be a working function pointer.
#[test]
fn nopic_program_shares_libc_data_with_libc() {
    let dir = workdir("toolchain", "nopic");
    for flags in [
        &["-O2", "-fno-pic", "-mcmodel=small"][..],
        &["-O2", "-fPIC"][..],
    ] {
        let objects = compile_fixture(&dir, "nopic_prog", "gcc", flags);
        assert!(objects.len() >= 3, "the program has several files");
        let native = link_native(&dir, "gcc", &objects, &["-no-pie"], &[]);
        let what = format!("gcc {flags:?}");
        let out = assert_same(
            &native,
            &objects,
            &[],
            &["-v", "-n", "bob", "-v", "one", "three"],
            &what,
        );
        // What makes the comparison meaningful: getopt's optind, the 64
        // variables setenv added, and errno, as libc left them.
        for line in [
            "optind: 5",
            "one: 3",
            "set variables seen: 64",
            "environ moved: 1",
            "after unsetenv: 63",
            "errno: 1",
            "compare: 1",
            "compare is strcmp: 1",
        ] {
            assert!(out.contains(line), "{line}: {out}");
        }
        assert_same(&native, &objects, &[], &["-n", "alice", "x"], &what);
        assert_same(&native, &objects, &[], &["-vvv"], &what);
        assert_same(&native, &objects, &[], &[], &what);
    }
}
