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
            "--target=x86_64-unknown-none-elf",
            // Position-independent: calls to the kernel go through stubs and
            // addresses through GOT slots the loader fills, so the module runs
            // wherever the region is, however far from the kernel. (A kernel
            // in the top 2 GiB could use -mcmodel=kernel instead.)
            "-fPIC",
            // Kernel code: no libc, no red zone (interrupts would clobber it),
            // no SSE registers (this kernel does not enable them), no stack
            // protector (no __stack_chk_guard here).
            "-ffreestanding",
            "-mno-red-zone",
            "-mgeneral-regs-only",
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
