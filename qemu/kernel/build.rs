//! Links with the architecture's script from `linker-scripts/`, and rebuilds
//! when the runner hands over a new module archive.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let script = manifest
        .join("../../linker-scripts")
        .join(format!("{arch}.ld"));
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-env-changed=MODLOAD_MODULE_ARCHIVE");
    if let Ok(archive) = env::var("MODLOAD_MODULE_ARCHIVE") {
        println!("cargo:rerun-if-changed={archive}");
    }
}
