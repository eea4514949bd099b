//! Links with the architecture's script from `linker-scripts/`, and rebuilds
//! when the runner hands over a new module archive or kernel symbol table
//! (`MODLOAD_KERNEL_SYMBOLS`; without one, the kernel gets an empty table).

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
    println!("cargo:rerun-if-env-changed=MODLOAD_KERNEL_SYMBOLS");
    let table = match env::var("MODLOAD_KERNEL_SYMBOLS") {
        Ok(table) => PathBuf::from(table),
        Err(_) => {
            // An empty table: the magic, no symbols, no names.
            let empty =
                PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("no-symbols.bin");
            let mut bytes = b"KSYM".to_vec();
            bytes.extend_from_slice(&[0; 8]);
            if let Err(error) = std::fs::write(&empty, bytes) {
                panic!("{}: {error}", empty.display());
            }
            empty
        }
    };
    println!("cargo:rerun-if-changed={}", table.display());
    println!("cargo:rustc-env=KERNEL_SYMBOL_TABLE={}", table.display());
}
