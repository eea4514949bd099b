//! Compiles the two C modules into relocatable objects (`.o`) in OUT_DIR;
//! `main.rs` embeds them with `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for module in ["greet", "use"] {
        let source = format!("modules/{module}.c");
        println!("cargo:rerun-if-changed={source}");
        // -fPIC: gcc's default (small code model, no PIC) emits 32-bit absolute
        // and PC-relative relocations, which overflow when mmap places the
        // module region more than 2 GiB away from the program. PIC code
        // reaches everything through the GOT and call stubs the loader builds.
        let status = Command::new("cc")
            .args(["-c", "-O2", "-fPIC", "-o"])
            .arg(out.join(format!("{module}.o")))
            .arg(&source)
            .status()
            .expect("run cc");
        assert!(status.success(), "cc failed on {source}");
    }
}
