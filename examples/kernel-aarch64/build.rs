//! Compiles `module.c` into a relocatable object (`.o`) in OUT_DIR, which
//! `main.rs` embeds with `include_bytes!`, and links with `link.ld`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg=-T{manifest}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=module.c");
    let status = Command::new("clang-22")
        .args([
            "--target=aarch64-none-elf",
            // The small code model: `adrp` reaches ±4 GiB and `bl` ±128 MiB.
            // The region sits right after the kernel, so both reach; a call
            // beyond 128 MiB would get a veneer from the loader.
            "-mcmodel=small",
            // Kernel code: no libc, no stack protector (no __stack_chk_guard
            // here). FP/SIMD registers are fine: boot.s enables them.
            "-ffreestanding",
            "-fno-stack-protector",
            "-O2",
            "-c",
            "module.c",
            "-o",
        ])
        .arg(out.join("module.o"))
        .status()
        .expect("run clang-22");
    assert!(status.success(), "clang-22 failed on module.c");
}
