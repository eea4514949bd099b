//! A real multi-file C program, run natively and through `modload run`:
//! the output and the exit status must be identical.

use std::path::PathBuf;
use std::process::Command;

use modload_tests::{compile_c, fixture, run_native, CModel};

fn program_objects(model: CModel) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(fixture("prog"))
        .expect("prog fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "c"))
        .collect();
    sources.sort();
    assert!(sources.len() >= 4, "the program has several files");
    sources
        .iter()
        .map(|source| compile_c(source, model, &[]))
        .collect()
}

#[test]
fn modload_run_matches_the_native_program_in_every_model() {
    for model in [CModel::PieDefault, CModel::Pic, CModel::NoPicSmall] {
        let objects = program_objects(model);
        let args = ["alpha", "beta"];
        let (native_stdout, native_status) = run_native(&objects, &args);
        assert!(native_stdout.contains("sort: 3 4 12 84"), "{native_stdout}");

        let output = Command::new(env!("CARGO_BIN_EXE_modload"))
            .arg("run")
            .args(&objects)
            .arg("--")
            .args(args)
            .output()
            .expect("run modload");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            native_stdout,
            "{model:?}; stderr: {stderr}"
        );
        assert_eq!(
            output.status.code(),
            Some(native_status),
            "{model:?}; stderr: {stderr}"
        );
        assert!(stderr.is_empty(), "{model:?}: {stderr}");
    }
}
