//! Builds the modules for one architecture (C with clang-22, Rust with
//! Debian's rustc-web and `-Zbuild-std`), packs them into an archive and
//! builds the kernel around it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive;
use crate::ksyms;

/// The two kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `x86_64-unknown-none`, PVH boot.
    X86_64,
    /// `aarch64-unknown-none`, QEMU `virt`.
    Aarch64,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "x86_64" | "x86-64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-none",
            Arch::Aarch64 => "aarch64-unknown-none",
        }
    }

    /// clang flags for C modules: freestanding, no FP/SIMD registers (the
    /// kernels do not save them), no unwind tables, and the code model the
    /// kernel's reach calls for.
    fn c_flags(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[
                "--target=x86_64-unknown-none-elf",
                "-mcmodel=kernel",
                "-mno-red-zone",
            ],
            Arch::Aarch64 => &["--target=aarch64-none-elf", "-mcmodel=small"],
        }
    }
}

/// The repository root (the runner lives in `qemu/runner`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where an architecture's modules, kernel builds and logs go.
pub fn output_dir(arch: Arch) -> PathBuf {
    root().join("target/qemu").join(arch.name())
}

/// Runs `command`, failing with its output if it fails.
fn run(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("{what}: cannot start {:?}: {error}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A command for Debian's cargo and rustc (1.96, with library source), clear
/// of everything the outer `cargo run` put in the environment.
fn bare_metal_cargo(target_dir: &Path) -> Command {
    let mut command = Command::new("/usr/bin/cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let inherited = (name.starts_with("CARGO") && name != "CARGO_HOME")
            || name.starts_with("RUSTUP")
            || matches!(
                name.as_str(),
                "RUSTC" | "RUSTDOC" | "RUSTC_WRAPPER" | "RUSTFLAGS" | "RUSTDOCFLAGS"
            );
        if inherited {
            command.env_remove(&name);
        }
    }
    command
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir);
    command
}

const BUILD_STD: [&str; 2] = [
    "-Zbuild-std=core,alloc",
    "-Zbuild-std-features=compiler-builtins-mem",
];

fn compile_c(arch: Arch, source: &Path, object: &Path) -> Result<(), String> {
    let mut command = Command::new("clang-22");
    command
        .args(arch.c_flags())
        .args([
            "-ffreestanding",
            "-fno-pic",
            "-fno-common",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-mgeneral-regs-only",
            // Frame pointers in every function, leaves too, so the kernels'
            // fault reports walk through module frames.
            "-fno-omit-frame-pointer",
            "-mno-omit-leaf-frame-pointer",
            "-O2",
            // DWARF for GDB (`cargo xtask debug`); the loader skips it.
            "-g",
            "-c",
        ])
        .arg(source)
        .arg("-o")
        .arg(object);
    run(command, &format!("compiling {}", source.display()))
}

/// Builds one Rust module crate to a single relocatable object.
fn compile_rust(arch: Arch, krate: &str, object: &Path) -> Result<(), String> {
    let modules = root().join("qemu/modules/rust");
    let target_dir = output_dir(arch).join("rust-modules");
    let mut command = bare_metal_cargo(&target_dir);
    command
        .current_dir(&modules)
        .args(["rustc", "--release", "--quiet", "-p", krate, "--target"])
        .arg(arch.rust_target())
        .args(BUILD_STD)
        .args(["--", "--emit=obj", "-C", "relocation-model=static"])
        // Frame records, for the kernels' fault reports (as the C modules).
        .args(["-C", "force-frame-pointers=yes"]);
    run(command, &format!("building the Rust module {krate}"))?;
    let deps = target_dir.join(arch.rust_target()).join("release/deps");
    let built = newest(&deps, krate, "o")?;
    std::fs::copy(&built, object)
        .map(|_| ())
        .map_err(|error| format!("copying {}: {error}", built.display()))
}

/// The most recently written `deps/<stem>-<hash>.<extension>`.
fn newest(dir: &Path, stem: &str, extension: &str) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|found| found == extension)
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&format!("{stem}-")))
        })
        .max_by_key(|path| path.metadata().and_then(|meta| meta.modified()).ok())
        .ok_or_else(|| format!("no {stem}-*.{extension} in {}", dir.display()))
}

/// Builds every module, the archive, and the kernel; returns the kernel ELF.
pub fn kernel_with_modules(arch: Arch) -> Result<PathBuf, String> {
    kernel_with_features(arch, &[])
}

/// [`kernel_with_modules`], with the kernel's cargo `features` (`gdb`).
pub fn kernel_with_features(arch: Arch, features: &[&str]) -> Result<PathBuf, String> {
    let out = output_dir(arch);
    let objects = out.join("modules");
    std::fs::create_dir_all(&objects).map_err(|error| format!("{}: {error}", objects.display()))?;
    let sources = root().join("qemu/modules");
    let mut members = Vec::new();
    let mut add = |name: &str, path: &Path| -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        members.push((name.to_owned(), bytes));
        Ok(())
    };
    for module in ["a", "c", "e", "f", "g", "stress", "unresolved"] {
        let object = objects.join(format!("{module}.o"));
        compile_c(arch, &sources.join(format!("{module}.c")), &object)?;
        add(&format!("{module}.o"), &object)?;
    }
    let overflow = objects.join("overflow.o");
    compile_c(
        arch,
        &sources.join(format!("overflow-{}.s", arch.name())),
        &overflow,
    )?;
    add("overflow.o", &overflow)?;
    for (krate, name) in [("module_b", "b.o"), ("module_d", "d.o")] {
        let object = objects.join(name);
        compile_rust(arch, krate, &object)?;
        add(name, &object)?;
    }
    let archive_path = out.join("modules.a");
    let archive = archive::write(&members)?;
    // Rewritten only when it changes: the kernel includes it, and a new
    // file would make cargo build an unchanged kernel again.
    if std::fs::read(&archive_path).ok().as_deref() != Some(archive.as_slice()) {
        std::fs::write(&archive_path, archive)
            .map_err(|error| format!("{}: {error}", archive_path.display()))?;
    }

    let target_dir = out.join("kernel");
    let kernel = target_dir
        .join(arch.rust_target())
        .join("release/modload-test-kernel");
    // A table per feature set: each set's kernel has functions of its own,
    // and one table would be rebuilt whenever the set changes.
    let suffix: String = features
        .iter()
        .map(|feature| format!("-{feature}"))
        .collect();
    let symbols = out.join(format!("kernel-symbols{suffix}.bin"));
    let build = || -> Result<(), String> {
        let mut command = bare_metal_cargo(&target_dir);
        command
            .current_dir(root().join("qemu/kernel"))
            .args(["build", "--release", "--quiet", "--target"])
            .arg(arch.rust_target())
            .args(BUILD_STD)
            .args(features.iter().flat_map(|feature| ["--features", feature]))
            .env("MODLOAD_MODULE_ARCHIVE", &archive_path)
            .env("MODLOAD_KERNEL_SYMBOLS", &symbols);
        run(command, &format!("building the {} kernel", arch.name()))
    };
    let table = with_symbol_table(&out, &symbols, &kernel, build)?;
    println!("== {}: {table}", arch.name());
    Ok(kernel)
}

/// Builds the kernel so that its `.kernel_symbols` section holds the table of
/// its own functions ([`ksyms`]). The table of the previous run is included
/// first; if the kernel's functions differ from it, the new table is written
/// and the kernel built again, which must leave every other symbol where it
/// was. An unchanged kernel costs one (no-op) build, a changed one two.
/// Returns what it did, for the log.
fn with_symbol_table(
    out: &Path,
    table_path: &Path,
    kernel: &Path,
    build: impl Fn() -> Result<(), String>,
) -> Result<String, String> {
    let write = |bytes: &[u8]| {
        std::fs::write(table_path, bytes)
            .map_err(|error| format!("{}: {error}", table_path.display()))
    };
    let included = match std::fs::read(table_path) {
        Ok(bytes) => bytes,
        Err(_) => {
            let empty = ksyms::encode(&[])?;
            write(&empty)?;
            empty
        }
    };
    let started = std::time::Instant::now();
    build()?;
    let first = ksyms::read_symbols(kernel)?;
    let functions = ksyms::functions(&first)?;
    let table = ksyms::encode(&functions)?;
    let mut relinked = String::new();
    if table != included {
        write(&table)?;
        let first_build = started.elapsed();
        build()?;
        relinked = format!(
            "; the functions changed, so it was built again ({:.1} s, then {:.1} s) and no symbol moved",
            first_build.as_secs_f64(),
            (started.elapsed() - first_build).as_secs_f64()
        );
        let second = ksyms::read_symbols(kernel)?;
        ksyms::same_addresses(&first, &second)?;
        if ksyms::encode(&ksyms::functions(&second)?)? != table {
            return Err("the kernel's functions changed when its symbol table was added".into());
        }
    }
    let embedded = ksyms::section_bytes(kernel, ".kernel_symbols", &out.join("section.bin"))?;
    if embedded != table {
        return Err(format!(
            "{}: .kernel_symbols holds {} bytes that are not the kernel's table ({} bytes)",
            kernel.display(),
            embedded.len(),
            table.len()
        ));
    }
    Ok(format!(
        "kernel symbol table: {} functions in {} bytes{relinked}",
        functions.len(),
        table.len()
    ))
}
