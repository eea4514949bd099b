//! `modload keygen`, `modload sign` and `modload run --trusted-key`, end to end.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

mod common;

use common::{workdir as new_workdir, WorkDir};

fn workdir(test: &str) -> WorkDir {
    new_workdir("sign", test)
}

fn modload(dir: &Path, args: &[&str]) -> Output {
    Command::new(MODLOAD)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `main` returns 5 and prints a line.
fn program(dir: &Path) {
    std::fs::write(
        dir.join("p.c"),
        "#include <stdio.h>\nint main(void) { puts(\"signed hello\"); return 5; }\n",
    )
    .unwrap();
    let status = Command::new("gcc")
        .current_dir(dir)
        .args([
            "-c",
            "-O1",
            "-fno-asynchronous-unwind-tables",
            "p.c",
            "-o",
            "p.o",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn keygen_sign_and_run() {
    let dir = workdir("run");
    program(&dir);
    let keygen = modload(&dir, &["keygen", "-o", "k"]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let public = std::fs::read_to_string(dir.join("k.pub")).unwrap();
    assert_eq!(String::from_utf8_lossy(&keygen.stdout), public);
    assert_eq!(public.trim().len(), 64);
    let mode = std::fs::metadata(dir.join("k.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    // Never overwritten.
    assert_eq!(modload(&dir, &["keygen", "-o", "k"]).status.code(), Some(1));

    let sign = modload(&dir, &["sign", "--key", "k.key", "p.o", "-o", "ps.o"]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    let plain = std::fs::read(dir.join("p.o")).unwrap();
    let signed = std::fs::read(dir.join("ps.o")).unwrap();
    assert_eq!(signed.len(), plain.len() + 120);
    assert_eq!(&signed[..plain.len()], plain.as_slice());

    let run = modload(&dir, &["run", "ps.o", "--trusted-key", "k.pub"]);
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "signed hello\n");

    // Unsigned, or signed by another key: refused before anything runs.
    let unsigned = modload(&dir, &["run", "p.o", "--trusted-key", "k.pub"]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        stderr(&unsigned).contains("not signed"),
        "{}",
        stderr(&unsigned)
    );
    assert!(unsigned.stdout.is_empty());
    assert!(modload(&dir, &["keygen", "-o", "other"]).status.success());
    let untrusted = modload(&dir, &["run", "ps.o", "--trusted-key", "other.pub"]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        stderr(&untrusted).contains("not trusted"),
        "{}",
        stderr(&untrusted)
    );
    // Either of two trusted keys will do.
    let either = modload(
        &dir,
        &[
            "run",
            "ps.o",
            "--trusted-key",
            "other.pub",
            "--trusted-key",
            "k.pub",
        ],
    );
    assert_eq!(either.status.code(), Some(5), "{}", stderr(&either));

    // One byte of the object changed after signing.
    let mut tampered = signed.clone();
    tampered[plain.len() / 2] ^= 1;
    std::fs::write(dir.join("t.o"), &tampered).unwrap();
    let run = modload(&dir, &["run", "t.o", "--trusted-key", "k.pub"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("does not match"), "{}", stderr(&run));
}

#[test]
fn sign_in_place_refuses_to_sign_twice_and_non_objects() {
    let dir = workdir("twice");
    program(&dir);
    assert!(modload(&dir, &["keygen", "-o", "k"]).status.success());
    let sign = modload(&dir, &["sign", "--key", "k.key", "p.o"]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    let again = modload(&dir, &["sign", "--key", "k.key", "p.o"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already signed"),
        "{}",
        stderr(&again)
    );
    // Without keys, a signed object runs as any object.
    let run = modload(&dir, &["run", "p.o"]);
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));

    std::fs::write(dir.join("junk.o"), b"not an object").unwrap();
    let junk = modload(&dir, &["sign", "--key", "k.key", "junk.o"]);
    assert_eq!(junk.status.code(), Some(1));
    assert!(
        stderr(&junk).contains("not an ELF file"),
        "{}",
        stderr(&junk)
    );
    let usage = modload(&dir, &["sign", "p.o"]);
    assert_eq!(usage.status.code(), Some(2));
    let bad_key = modload(&dir, &["sign", "--key", "p.c", "p.o"]);
    assert_eq!(bad_key.status.code(), Some(1));
    assert!(
        stderr(&bad_key).contains("not a key file"),
        "{}",
        stderr(&bad_key)
    );
}
