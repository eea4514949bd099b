//! Builds the AArch64 fixtures: relocatable objects for `e_machine` AArch64,
//! made on the x86_64 host by cross tools and cached like the x86_64 ones.
//!
//! Three kinds, sources in `tests/fixtures/aarch64/` (see the README there):
//! - C and C++, by `clang-22 --target=aarch64-none-elf` in every [`CModel`];
//! - `no_std` Rust, by Debian's `/usr/bin/rustc` for `aarch64-unknown-none`
//!   in every [`RustModel`], against a `core` that Debian's `/usr/bin/cargo`
//!   builds once with `-Zbuild-std` (rustup's toolchain has no AArch64
//!   target);
//! - hand-written assembly, by `llvm-mc-22`, one file per relocation group.
//!
//! [`fixtures`] builds them all and lists them with their model and the
//! symbols they import, for tests that iterate over every object. The checks
//! read objects with `llvm-readelf-22`, never with modload.
//!
//! Tools: `scripts/install-deps.sh cross kernel` installs them (clang-22,
//! llvm-22, rustc-web, cargo-web, rust-web-src).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{build_cached, cache_dir, file_stem, read, run_checked, tool_version, CacheKey};

/// The C compiler (and C++: it is the same driver, with `-x c++`).
pub const CLANG: &str = "clang-22";
/// The assembler for the hand-written fixtures.
pub const LLVM_MC: &str = "llvm-mc-22";
/// The independent reader of objects used by the checks.
pub const LLVM_READELF: &str = "llvm-readelf-22";
/// Debian's cargo and rustc, called by full path so that rustup's proxies
/// on PATH are never used: rustup's toolchain has no AArch64 target.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// `rust-web-src`: the standard library's source and its vendored crates.
const RUST_LIBRARY_SOURCE: &str = "/usr/lib/rustlib/src/rust/library";
const RUST_TARGET: &str = "aarch64-unknown-none";
const CLANG_TARGET: &str = "--target=aarch64-none-elf";

/// Every relocation type that the fixtures, taken together, must contain
/// (`tests/tests/aarch64_fixtures.rs` checks this with llvm-readelf).
pub const RELOCATION_TYPES: &[&str] = &[
    "R_AARCH64_NONE",
    "R_AARCH64_ABS64",
    "R_AARCH64_ABS32",
    "R_AARCH64_ABS16",
    "R_AARCH64_PREL64",
    "R_AARCH64_PREL32",
    "R_AARCH64_PREL16",
    "R_AARCH64_MOVW_UABS_G0",
    "R_AARCH64_MOVW_UABS_G0_NC",
    "R_AARCH64_MOVW_UABS_G1",
    "R_AARCH64_MOVW_UABS_G1_NC",
    "R_AARCH64_MOVW_UABS_G2",
    "R_AARCH64_MOVW_UABS_G2_NC",
    "R_AARCH64_MOVW_UABS_G3",
    "R_AARCH64_MOVW_SABS_G0",
    "R_AARCH64_MOVW_SABS_G1",
    "R_AARCH64_MOVW_SABS_G2",
    "R_AARCH64_LD_PREL_LO19",
    "R_AARCH64_ADR_PREL_LO21",
    "R_AARCH64_ADR_PREL_PG_HI21",
    "R_AARCH64_ADR_PREL_PG_HI21_NC",
    "R_AARCH64_ADD_ABS_LO12_NC",
    "R_AARCH64_LDST8_ABS_LO12_NC",
    "R_AARCH64_LDST16_ABS_LO12_NC",
    "R_AARCH64_LDST32_ABS_LO12_NC",
    "R_AARCH64_LDST64_ABS_LO12_NC",
    "R_AARCH64_LDST128_ABS_LO12_NC",
    "R_AARCH64_TSTBR14",
    "R_AARCH64_CONDBR19",
    "R_AARCH64_JUMP26",
    "R_AARCH64_CALL26",
    "R_AARCH64_MOVW_PREL_G0",
    "R_AARCH64_MOVW_PREL_G0_NC",
    "R_AARCH64_MOVW_PREL_G1",
    "R_AARCH64_MOVW_PREL_G1_NC",
    "R_AARCH64_MOVW_PREL_G2",
    "R_AARCH64_MOVW_PREL_G2_NC",
    "R_AARCH64_MOVW_PREL_G3",
    "R_AARCH64_GOT_LD_PREL19",
    "R_AARCH64_LD64_GOTPAGE_LO15",
    "R_AARCH64_ADR_GOT_PAGE",
    "R_AARCH64_LD64_GOT_LO12_NC",
];

/// Flags for every C and C++ fixture, whatever the model: freestanding, no
/// COMMON symbols, no `.eh_frame`.
const CLANG_BASE_FLAGS: &[&str] = &[
    CLANG_TARGET,
    "-c",
    "-ffreestanding",
    "-fno-common",
    "-fno-asynchronous-unwind-tables",
    "-O2",
];

/// clang needs to be told a `.cpp` file is C++ when it compiles for a bare
/// target; the rest are the x86_64 fixtures' C++ flags.
const CXX_LANGUAGE: &[&str] = &["-x", "c++"];

/// How a C or C++ fixture is compiled for AArch64: a code model and PIC or
/// not.
///
/// Five of the six combinations: clang's driver rejects `-mcmodel=large`
/// with `-fPIC` ("invalid argument '-mcmodel=large' only allowed with
/// '-fno-pic'"). The large model builds every address with a MOVZ/MOVK
/// sequence of absolute values (MOVW_UABS_G3..G0_NC), which position
/// independent code cannot use, and the AArch64 ELF ABI defines no large
/// PIC model. `tests/tests/aarch64_fixtures.rs` checks that clang still
/// refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CModel {
    /// `-mcmodel=tiny -fPIC`: everything within +-1 MiB; globals through
    /// the GOT with GOT_LD_PREL19, addresses with ADR_PREL_LO21.
    TinyPic,
    /// `-mcmodel=tiny -fno-pic`: LD_PREL_LO19 and ADR_PREL_LO21.
    TinyStatic,
    /// `-mcmodel=small -fPIC`: ADR_GOT_PAGE + LD64_GOT_LO12_NC for globals,
    /// ADRP + ADD/LDST for local data (+-4 GiB).
    SmallPic,
    /// `-mcmodel=small -fno-pic`: ADR_PREL_PG_HI21 + ADD_ABS_LO12_NC and the
    /// LDSTn_ABS_LO12_NC family.
    SmallStatic,
    /// `-mcmodel=large -fno-pic`: MOVW_UABS_G3/G2_NC/G1_NC/G0_NC, anywhere
    /// in the address space.
    LargeStatic,
}

impl CModel {
    /// Every model clang accepts, in declaration order.
    pub const ALL: [CModel; 5] = [
        CModel::TinyPic,
        CModel::TinyStatic,
        CModel::SmallPic,
        CModel::SmallStatic,
        CModel::LargeStatic,
    ];

    /// The `-mcmodel` value.
    pub fn code_model(self) -> &'static str {
        match self {
            CModel::TinyPic | CModel::TinyStatic => "tiny",
            CModel::SmallPic | CModel::SmallStatic => "small",
            CModel::LargeStatic => "large",
        }
    }

    /// Whether the code is position independent (`-fPIC`).
    pub fn pic(self) -> bool {
        matches!(self, CModel::TinyPic | CModel::SmallPic)
    }

    /// The clang flags that select this model.
    pub fn flags(self) -> [&'static str; 2] {
        let code_model = match self.code_model() {
            "tiny" => "-mcmodel=tiny",
            "small" => "-mcmodel=small",
            _ => "-mcmodel=large",
        };
        [code_model, if self.pic() { "-fPIC" } else { "-fno-pic" }]
    }

    /// A short name, used in fixture names and cached file names.
    pub fn name(self) -> &'static str {
        match self {
            CModel::TinyPic => "tiny-pic",
            CModel::TinyStatic => "tiny-static",
            CModel::SmallPic => "small-pic",
            CModel::SmallStatic => "small-static",
            CModel::LargeStatic => "large-static",
        }
    }
}

/// How a Rust fixture is compiled for AArch64: `-C code-model` and
/// `-C relocation-model`.
///
/// All six combinations: rustc, unlike clang's driver, accepts the large
/// code model with PIC. LLVM then reaches globals through the GOT as in the
/// small PIC model (ADR_GOT_PAGE + LD64_GOT_LO12_NC); what stays "large" is
/// `.eh_frame`, whose PC-relative fields become PREL64 instead of PREL32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RustModel {
    /// `-C code-model=tiny -C relocation-model=pic`
    TinyPic,
    /// `-C code-model=tiny -C relocation-model=static`
    TinyStatic,
    /// `-C code-model=small -C relocation-model=pic`
    SmallPic,
    /// `-C code-model=small -C relocation-model=static`
    SmallStatic,
    /// `-C code-model=large -C relocation-model=pic`
    LargePic,
    /// `-C code-model=large -C relocation-model=static`
    LargeStatic,
}

impl RustModel {
    /// Every model, in declaration order.
    pub const ALL: [RustModel; 6] = [
        RustModel::TinyPic,
        RustModel::TinyStatic,
        RustModel::SmallPic,
        RustModel::SmallStatic,
        RustModel::LargePic,
        RustModel::LargeStatic,
    ];

    /// The `-C code-model` value.
    pub fn code_model(self) -> &'static str {
        match self {
            RustModel::TinyPic | RustModel::TinyStatic => "tiny",
            RustModel::SmallPic | RustModel::SmallStatic => "small",
            RustModel::LargePic | RustModel::LargeStatic => "large",
        }
    }

    /// The `-C relocation-model` value.
    pub fn relocation_model(self) -> &'static str {
        match self {
            RustModel::TinyPic | RustModel::SmallPic | RustModel::LargePic => "pic",
            RustModel::TinyStatic | RustModel::SmallStatic | RustModel::LargeStatic => "static",
        }
    }

    /// A short name, used in fixture names and cached file names.
    pub fn name(self) -> &'static str {
        match self {
            RustModel::TinyPic => "tiny-pic",
            RustModel::TinyStatic => "tiny-static",
            RustModel::SmallPic => "small-pic",
            RustModel::SmallStatic => "small-static",
            RustModel::LargePic => "large-pic",
            RustModel::LargeStatic => "large-static",
        }
    }
}

/// How a fixture object was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// C or C++ by clang.
    C(CModel),
    /// Rust by rustc.
    Rust(RustModel),
    /// Hand-written assembly by llvm-mc: no model.
    Assembly,
}

impl Model {
    /// `tiny-pic`, ..., or `asm`.
    pub fn name(self) -> &'static str {
        match self {
            Model::C(model) => model.name(),
            Model::Rust(model) => model.name(),
            Model::Assembly => "asm",
        }
    }
}

/// One built fixture object.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Unique: `<stem>-<model>` (`base-small-pic`, `ra1-large-static`) for
    /// C and Rust, the file stem (`movw_prel`) for assembly.
    pub name: String,
    /// The source file it was built from (for the generated source, the
    /// generated file in the cache).
    pub source: PathBuf,
    /// The cached object.
    pub path: PathBuf,
    pub model: Model,
    /// Every undefined symbol of the object, as declared by the source's
    /// comment: kernel functions and data (`host_*`), symbols of modules
    /// named in `after`, test-placed targets of the assembly fixtures, weak
    /// ones, and `_GLOBAL_OFFSET_TABLE_` where the code uses it (the loader
    /// resolves that one to the module's GOT). The self-check compares it
    /// with the object.
    pub undefined: BTreeSet<String>,
    /// The subset of `undefined` that is weak (0 when unresolved).
    pub weak_undefined: BTreeSet<String>,
    /// Stems of fixtures (built in the same model) that define some of
    /// `undefined` and must be loaded first: `user` after `base`.
    pub after: &'static [&'static str],
    /// Loading must fail wherever the module is placed (a misaligned local
    /// target): the relocation-error fixtures.
    pub always_fails: bool,
}

/// A fixture source and what its comment promises.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Path under `tests/fixtures/aarch64/`.
    pub file: &'static str,
    /// Strong undefined symbols.
    pub undefined: &'static [&'static str],
    /// Weak undefined symbols.
    pub weak: &'static [&'static str],
    /// Stems of modules that must be loaded first.
    pub after: &'static [&'static str],
    /// For assembly: exactly the relocation types the object holds, without
    /// the `R_AARCH64_` prefix. Empty for C and Rust, whose types depend on
    /// the model.
    pub relocations: &'static [&'static str],
    /// Loading must fail wherever the module is placed.
    pub always_fails: bool,
}

impl Source {
    const fn new(file: &'static str, undefined: &'static [&'static str]) -> Self {
        Source {
            file,
            undefined,
            weak: &[],
            after: &[],
            relocations: &[],
            always_fails: false,
        }
    }

    const fn weak(mut self, weak: &'static [&'static str]) -> Self {
        self.weak = weak;
        self
    }

    const fn after(mut self, after: &'static [&'static str]) -> Self {
        self.after = after;
        self
    }

    const fn relocations(mut self, relocations: &'static [&'static str]) -> Self {
        self.relocations = relocations;
        self
    }

    const fn always_fails(mut self) -> Self {
        self.always_fails = true;
        self
    }
}

const KERNEL_ALL: &[&str] = &[
    "host_add",
    "host_mul",
    "host_record",
    "host_counter",
    "host_config",
];

/// The C and C++ sources, built in every [`CModel`].
pub const C_SOURCES: &[Source] = &[
    Source::new("c/base.c", &["host_add"]),
    Source::new(
        "c/user.c",
        &[
            "a_value",
            "a_bump",
            "a_square",
            "a_counter",
            "a_scratch",
            "host_mul",
        ],
    )
    .after(&["base"]),
    Source::new("c/pointers.c", &["host_config", "host_counter"]),
    Source::new(
        "c/switch.c",
        &["host_add", "host_mul", "host_counter", "host_record"],
    ),
    Source::new("c/strings.c", &[]),
    Source::new("c/widths.c", &[]),
    Source::new("c/kernel_calls.c", KERNEL_ALL),
    Source::new("c/weak.c", &[]).weak(&["maybe_fn", "maybe_data"]),
    Source::new("c/ctors.c", &["host_record"]),
    Source::new("c/comdat_a.c", &[]),
    Source::new("c/comdat_b.c", &[]).after(&["comdat_a"]),
    Source::new("c/comdat_fn_a.cpp", &[]),
    Source::new("c/comdat_fn_b.cpp", &[]).after(&["comdat_fn_a"]),
    Source::new("c/big_arrays.c", &[]),
    Source::new("c/sections.c", &[]),
];

/// The generated C source (see [`many_relocs_source`]), built in every
/// [`CModel`] as fixture `many_relocs-<model>`.
/// Its `file` names no file under `tests/fixtures/aarch64/`.
pub const MANY_RELOCS: Source = Source::new("(generated) many_relocs.c", &["host_add"]);

/// The Rust sources, built in every [`RustModel`].
pub const RUST_SOURCES: &[Source] = &[
    Source::new("rust/ra1.rs", &["host_add", "host_record", "host_config"]),
    Source::new(
        "rust/ra2.rs",
        &[
            "RA1_STATE",
            "ra1_bump",
            "ra1_select",
            "ra1_table_sum",
            "host_mul",
        ],
    )
    .weak(&["maybe_rust"])
    .after(&["ra1"]),
];

/// The assembly sources, with exactly the relocation types each holds.
pub const ASM_SOURCES: &[Source] = &[
    Source::new(
        "asm/data.s",
        &[
            "abs64_target",
            "abs32_target",
            "abs16_target",
            "prel64_target",
            "prel32_target",
            "prel16_target",
        ],
    )
    .relocations(&[
        "ABS64",
        "ABS32",
        "ABS16",
        "PREL64",
        "PREL32",
        "PREL16",
        "ADR_PREL_PG_HI21",
        "LDST64_ABS_LO12_NC",
    ]),
    Source::new(
        "asm/branches.s",
        &["call_target", "jump_target", "cond_target", "test_target"],
    )
    .relocations(&["CALL26", "JUMP26", "CONDBR19", "TSTBR14"]),
    Source::new(
        "asm/pcrel.s",
        &["lit_target", "adr_target", "page_target", "page_nc_target"],
    )
    .relocations(&[
        "LD_PREL_LO19",
        "ADR_PREL_LO21",
        "ADR_PREL_PG_HI21",
        "ADR_PREL_PG_HI21_NC",
        "ADD_ABS_LO12_NC",
    ]),
    Source::new(
        "asm/ldst.s",
        &[
            "ldst8_target",
            "ldst16_target",
            "ldst32_target",
            "ldst64_target",
            "ldst128_target",
        ],
    )
    .relocations(&[
        "ADR_PREL_PG_HI21",
        "LDST8_ABS_LO12_NC",
        "LDST16_ABS_LO12_NC",
        "LDST32_ABS_LO12_NC",
        "LDST64_ABS_LO12_NC",
        "LDST128_ABS_LO12_NC",
    ]),
    Source::new("asm/got.s", &["got_target", "got_other_target"]).relocations(&[
        "ADR_GOT_PAGE",
        "LD64_GOT_LO12_NC",
        "GOT_LD_PREL19",
    ]),
    Source::new(
        "asm/got_page.s",
        &["_GLOBAL_OFFSET_TABLE_", "gotpage_target"],
    )
    .relocations(&["ADR_PREL_PG_HI21", "LD64_GOTPAGE_LO15"]),
    Source::new(
        "asm/movw_uabs.s",
        &[
            "uabs_target",
            "uabs_g0_target",
            "uabs_g1_target",
            "uabs_g2_target",
        ],
    )
    .relocations(&[
        "MOVW_UABS_G0",
        "MOVW_UABS_G0_NC",
        "MOVW_UABS_G1",
        "MOVW_UABS_G1_NC",
        "MOVW_UABS_G2",
        "MOVW_UABS_G2_NC",
        "MOVW_UABS_G3",
    ]),
    Source::new(
        "asm/movw_sabs.s",
        &["sabs_g0_target", "sabs_g1_target", "sabs_g2_target"],
    )
    .relocations(&[
        "MOVW_SABS_G0",
        "MOVW_SABS_G1",
        "MOVW_SABS_G2",
        "MOVW_UABS_G0_NC",
        "MOVW_UABS_G1_NC",
    ]),
    Source::new(
        "asm/movw_prel.s",
        &[
            "prel_target",
            "prel_g0_target",
            "prel_g1_target",
            "prel_g2_target",
        ],
    )
    .relocations(&[
        "MOVW_PREL_G0",
        "MOVW_PREL_G0_NC",
        "MOVW_PREL_G1",
        "MOVW_PREL_G1_NC",
        "MOVW_PREL_G2",
        "MOVW_PREL_G2_NC",
        "MOVW_PREL_G3",
    ]),
    Source::new("asm/none.s", &["none_target"]).relocations(&["NONE"]),
    Source::new(
        "asm/misaligned_ldst.s",
        &[
            "mis_ldst16_target",
            "mis_ldst32_target",
            "mis_ldst64_target",
            "mis_ldst128_target",
        ],
    )
    .relocations(&[
        "ADR_PREL_PG_HI21",
        "LDST16_ABS_LO12_NC",
        "LDST32_ABS_LO12_NC",
        "LDST64_ABS_LO12_NC",
        "LDST128_ABS_LO12_NC",
    ]),
    Source::new("asm/misaligned_ldst_local.s", &[])
        .relocations(&["ADR_PREL_PG_HI21", "LDST64_ABS_LO12_NC"])
        .always_fails(),
    Source::new(
        "asm/misaligned_branch.s",
        &[
            "odd_call_target",
            "odd_jump_target",
            "odd_cond_target",
            "odd_test_target",
            "odd_lit_target",
        ],
    )
    .relocations(&["CALL26", "JUMP26", "CONDBR19", "TSTBR14", "LD_PREL_LO19"]),
    Source::new("asm/misaligned_branch_local.s", &[])
        .relocations(&["CALL26"])
        .always_fails(),
];

/// Path of `tests/fixtures/aarch64/<name>`; panics if there is none.
pub fn fixture(name: &str) -> PathBuf {
    crate::fixture(&format!("aarch64/{name}"))
}

/// Compiles a C (`.c`) or C++ (`.cpp`) file with clang for AArch64:
/// `clang-22 --target=aarch64-none-elf -c -ffreestanding -fno-common
/// -fno-asynchronous-unwind-tables -O2` and the flags of `model` (plus
/// `-x c++ -std=c++17 -fno-exceptions -fno-rtti -fno-threadsafe-statics`
/// for C++). Headers beside the source count towards the cache key.
///
/// The generated source (`a64-many_relocs-generated-<hash>.c` in the cache)
/// builds as `many_relocs`.
pub fn compile_c(source: &Path, model: CModel) -> PathBuf {
    let stem = file_stem(source);
    let stem = match stem.strip_prefix("a64-") {
        Some(generated) => generated.split("-generated-").next().unwrap_or(generated),
        None => &stem,
    };
    let is_cxx = source.extension().is_some_and(|ext| ext == "cpp");
    let language: &[&str] = if is_cxx { CXX_LANGUAGE } else { &[] };
    let dialect: &[&str] = if is_cxx { crate::CXX_FLAGS } else { &[] };
    let model_flags = model.flags();
    let args: Vec<&str> = CLANG_BASE_FLAGS
        .iter()
        .chain(language)
        .chain(dialect)
        .chain(&model_flags)
        .copied()
        .collect();

    let mut key = CacheKey::new("a64-clang");
    key.add(tool_version(CLANG).as_bytes());
    key.add_strs(&args);
    key.add_source(source);
    key.add_headers_beside(source);

    build_cached(
        &format!("a64-{stem}"),
        model.name(),
        "o",
        key.finish(),
        |out, _scratch| {
            let mut cmd = Command::new(CLANG);
            cmd.args(&args).arg(source).arg("-o").arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// Assembles an AArch64 source: `llvm-mc-22 -triple=aarch64 -filetype=obj`.
pub fn assemble(source: &Path) -> PathBuf {
    let args = ["-triple=aarch64", "-filetype=obj"];
    let mut key = CacheKey::new("a64-llvm-mc");
    key.add(tool_version(LLVM_MC).as_bytes());
    key.add_strs(&args);
    key.add_source(source);

    build_cached(
        &format!("a64-{}", file_stem(source)),
        "asm",
        "o",
        key.finish(),
        |out, _scratch| {
            let mut cmd = Command::new(LLVM_MC);
            cmd.args(args).arg(source).arg("-o").arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// Compiles a single-file `no_std` Rust library for `aarch64-unknown-none`
/// into one relocatable object, with Debian's rustc against
/// [`rust_sysroot`]: `--crate-type=lib --emit=obj --edition 2021 -C
/// panic=abort -C opt-level=2 -C overflow-checks=off -C debuginfo=0 -C
/// codegen-units=1` and the models of `model`. RUSTC_BOOTSTRAP=1 allows
/// `#![feature(linkage)]` for weak imports.
pub fn compile_rust(source: &Path, model: RustModel) -> PathBuf {
    let sysroot = rust_sysroot();
    let crate_name = file_stem(source).replace('-', "_");
    let code_model = format!("code-model={}", model.code_model());
    let relocation_model = format!("relocation-model={}", model.relocation_model());
    let mut args: Vec<&str> = vec!["--target", RUST_TARGET, "--crate-name", &crate_name];
    args.extend_from_slice(crate::RUST_OBJECT_FLAGS);
    args.extend(["-C", &code_model, "-C", &relocation_model]);

    let mut key = CacheKey::new("a64-rustc");
    key.add(tool_version(DEBIAN_RUSTC).as_bytes());
    key.add_strs(&args);
    // The sysroot's directory name carries the hash of what built it.
    key.add(file_stem(&sysroot).as_bytes());
    key.add_source(source);

    build_cached(
        &format!("a64-{crate_name}"),
        model.name(),
        "o",
        key.finish(),
        |out, scratch| {
            let mut cmd = Command::new(DEBIAN_RUSTC);
            debian_rust_env(&mut cmd);
            // rustc writes intermediate files next to its output; the
            // private scratch directory keeps racing builds apart.
            cmd.current_dir(scratch)
                .arg("--sysroot")
                .arg(&sysroot)
                .args(&args)
                .arg(source)
                .arg("-o")
                .arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// A sysroot holding `core` and `compiler_builtins` for
/// `aarch64-unknown-none`, built once and cached as
/// `a64-rust-sysroot-<hash>/lib/rustlib/aarch64-unknown-none/lib/`.
///
/// Debian's cargo builds the project in `tests/fixtures/aarch64/rust/sysroot`
/// with `RUSTC_BOOTSTRAP=1 -Zbuild-std=core
/// -Zbuild-std-features=compiler-builtins-mem`, offline, from the
/// standard library's source and its vendored crates (rust-web-src). The
/// inner build's target directory is `a64-rust-target/` in the cache, and
/// the outer cargo's environment is kept out of it. The first build takes
/// about a minute; afterwards this is a directory lookup.
pub fn rust_sysroot() -> PathBuf {
    static SYSROOT: OnceLock<PathBuf> = OnceLock::new();
    SYSROOT.get_or_init(build_rust_sysroot).clone()
}

const BUILD_STD_ARGS: &[&str] = &[
    "build",
    "--release",
    "--offline",
    "--target",
    RUST_TARGET,
    "-Zbuild-std=core",
    "-Zbuild-std-features=compiler-builtins-mem",
    "--message-format=json",
];

fn build_rust_sysroot() -> PathBuf {
    let project = fixture("rust/sysroot");
    let project_files = ["Cargo.toml", "src/lib.rs"];
    let vendor = Path::new(RUST_LIBRARY_SOURCE).join("vendor");
    assert!(
        vendor.is_dir(),
        "no {}: install rust-web-src (scripts/install-deps.sh kernel)",
        vendor.display()
    );
    let replace = "source.crates-io.replace-with=\"vendored-sources\"".to_string();
    let directory = format!("source.vendored-sources.directory=\"{}\"", vendor.display());

    let mut key = CacheKey::new("a64-rust-sysroot");
    key.add(tool_version(DEBIAN_RUSTC).as_bytes());
    key.add(tool_version(DEBIAN_CARGO).as_bytes());
    key.add_strs(BUILD_STD_ARGS);
    key.add_strs(&[&replace, &directory]);
    for file in project_files {
        key.add(file.as_bytes());
        key.add(&read(&project.join(file)));
    }

    let cache = cache_dir();
    let target = cache.join(format!("a64-rust-sysroot-{:016x}", key.finish()));
    if target.is_dir() {
        return target;
    }

    // Serialise builds in this process; cargo's own lock on the target
    // directory serialises them between processes.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if target.is_dir() {
        return target;
    }

    static NEXT_SCRATCH: AtomicUsize = AtomicUsize::new(0);
    let scratch = crate::ScratchDir::new(cache.join(format!(
        ".build-a64-sysroot-{}-{}",
        std::process::id(),
        NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed)
    )));
    // A copy of the project, so that cargo writes its Cargo.lock into the
    // scratch directory and not into the source tree.
    let copy = scratch.0.join("project");
    for file in project_files {
        let to = copy.join(file);
        fs::create_dir_all(to.parent().expect("a file has a parent"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
        fs::copy(project.join(file), &to)
            .unwrap_or_else(|e| panic!("cannot copy to {}: {e}", to.display()));
    }

    let mut cmd = Command::new(DEBIAN_CARGO);
    debian_rust_env(&mut cmd);
    cmd.current_dir(&scratch.0)
        .env("CARGO_TARGET_DIR", cache.join("a64-rust-target"))
        .env("CARGO_HOME", cache.join("a64-cargo-home"))
        .args(BUILD_STD_ARGS)
        .arg("--manifest-path")
        .arg(copy.join("Cargo.toml"))
        .arg("--config")
        .arg(&replace)
        .arg("--config")
        .arg(&directory);
    let output = run_checked(&mut cmd);
    let messages = String::from_utf8_lossy(&output.stdout);

    let lib = scratch
        .0
        .join("sysroot/lib/rustlib")
        .join(RUST_TARGET)
        .join("lib");
    fs::create_dir_all(&lib).unwrap_or_else(|e| panic!("cannot create {}: {e}", lib.display()));
    let mut found = BTreeSet::new();
    for rlib in rlibs_in_cargo_messages(&messages) {
        let name = rlib
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        for wanted in ["core", "compiler_builtins"] {
            if name.starts_with(&format!("lib{wanted}-")) {
                fs::copy(&rlib, lib.join(&name))
                    .unwrap_or_else(|e| panic!("cannot copy {}: {e}", rlib.display()));
                found.insert(wanted);
            }
        }
    }
    assert_eq!(
        found.len(),
        2,
        "cargo -Zbuild-std built no core or compiler_builtins rlib:\n{messages}"
    );

    // Renaming a directory onto an existing one fails; then another process
    // has just put the same sysroot there, which is as good.
    if let Err(e) = fs::rename(scratch.0.join("sysroot"), &target) {
        assert!(
            target.is_dir(),
            "cannot move the sysroot to {}: {e}",
            target.display()
        );
    }
    target
}

/// The `.rlib` paths in cargo's `--message-format=json` output (the
/// `"filenames"` of each artifact). Paths are plain file names without
/// quotes or backslashes, so no JSON parser is needed.
fn rlibs_in_cargo_messages(messages: &str) -> Vec<PathBuf> {
    let mut rlibs = Vec::new();
    for line in messages.lines() {
        let Some((_, rest)) = line.split_once("\"filenames\":[") else {
            continue;
        };
        let Some((list, _)) = rest.split_once(']') else {
            continue;
        };
        for item in list.split(',') {
            let path = item.trim().trim_matches('"');
            if path.ends_with(".rlib") {
                rlibs.push(PathBuf::from(path));
            }
        }
    }
    rlibs
}

/// Keeps the outer cargo (and rustup) out of an inner Debian rustc or cargo:
/// drops every `CARGO*`, `RUST*` variable (`RUSTC`, `RUSTC_WRAPPER`,
/// `RUSTFLAGS`, `RUSTUP_TOOLCHAIN`, `CARGO_TARGET_DIR`, ...), puts /usr/bin
/// first on PATH so that no rustup proxy is found, and names Debian's rustc.
fn debian_rust_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO") || name_text.starts_with("RUST") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("PATH", "/usr/bin:/bin")
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1");
}

/// Functions, globals and data pointers in [`many_relocs_source`].
const MANY_RELOCS_FUNCTIONS: usize = 1024;
const MANY_RELOCS_POINTERS_PER_GLOBAL: usize = 7;

/// Writes (once, cached) a generated C source with more than 10,000
/// relocations in every [`CModel`]: 1024 globals `long mr_a_K[8]`, 1024
/// functions `mr_fn_K(x) = host_add(x, mr_a_K[0]) + mr_a_{K+1}[1]` (two data
/// references and a call each), a const table of the 1024 functions and a
/// writable table of 7 168 pointers `&mr_a_K[J]` (ABS64 with addends 0..48).
/// Tiny models give 11 264 relocations, small 13 312, large 17 408.
/// Expected: `mr_fn_K(x) == x + K` (element 1 of every global is 0),
/// `mr_table[K] == mr_fn_K`, `*mr_ptrs[7K] == K`.
pub fn many_relocs_source() -> PathBuf {
    let functions = MANY_RELOCS_FUNCTIONS;
    let mut text = String::new();
    text.push_str("/* Generated by tests/src/aarch64.rs (many_relocs_source). */\n");
    text.push_str("extern long host_add(long a, long b);\n");
    for k in 0..functions {
        writeln!(text, "long mr_a_{k}[8] = {{ {k} }};").expect("writing to a String");
    }
    for k in 0..functions {
        let next = (k + 1) % functions;
        writeln!(
            text,
            "long mr_fn_{k}(long x) {{ return host_add(x, mr_a_{k}[0]) + mr_a_{next}[1]; }}"
        )
        .expect("writing to a String");
    }
    writeln!(text, "long (*const mr_table[{functions}])(long) = {{").expect("writing");
    for k in 0..functions {
        writeln!(text, "    mr_fn_{k},").expect("writing to a String");
    }
    text.push_str("};\n");
    let pointers = functions * MANY_RELOCS_POINTERS_PER_GLOBAL;
    writeln!(text, "long *mr_ptrs[{pointers}] = {{").expect("writing to a String");
    for k in 0..functions {
        for j in 0..MANY_RELOCS_POINTERS_PER_GLOBAL {
            writeln!(text, "    &mr_a_{k}[{j}],").expect("writing to a String");
        }
    }
    text.push_str("};\n");

    let mut key = CacheKey::new("a64-generated");
    key.add(text.as_bytes());
    build_cached(
        "a64-many_relocs",
        "generated",
        "c",
        key.finish(),
        |out, _scratch| {
            fs::write(out, &text).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
        },
    )
}

/// What to build for one fixture, or the Rust sysroot.
enum Job {
    Sysroot,
    C(&'static Source, CModel),
    ManyRelocs(CModel),
    Rust(&'static Source, RustModel),
    Assembly(&'static Source),
}

/// Builds every AArch64 fixture (cached; in parallel on a cold cache) and
/// lists them: every source of [`C_SOURCES`] and the generated
/// [`MANY_RELOCS`] in every [`CModel`], every source of [`ASM_SOURCES`], and
/// every source of [`RUST_SOURCES`] in every [`RustModel`]. The order is
/// fixed: C, generated, assembly, Rust, each by source then model.
pub fn fixtures() -> Vec<Fixture> {
    // The Rust sysroot comes first, so that one thread builds it (the long
    // part of a cold build) while the others build C and assembly; the Rust
    // jobs come last and rarely wait for it.
    let mut jobs = vec![Job::Sysroot];
    for source in C_SOURCES {
        jobs.extend(CModel::ALL.iter().map(|&model| Job::C(source, model)));
    }
    jobs.extend(CModel::ALL.iter().map(|&model| Job::ManyRelocs(model)));
    jobs.extend(ASM_SOURCES.iter().map(Job::Assembly));
    for source in RUST_SOURCES {
        jobs.extend(RustModel::ALL.iter().map(|&model| Job::Rust(source, model)));
    }
    parallel_map(&jobs, build_job)
        .into_iter()
        .flatten()
        .collect()
}

fn build_job(job: &Job) -> Option<Fixture> {
    let (source, name, fixture_source, path, model) = match *job {
        Job::Sysroot => {
            rust_sysroot();
            return None;
        }
        Job::C(source, model) => {
            let file = fixture(source.file);
            let path = compile_c(&file, model);
            let name = format!("{}-{}", file_stem(&file), model.name());
            (source, name, file, path, Model::C(model))
        }
        Job::ManyRelocs(model) => {
            let file = many_relocs_source();
            let path = compile_c(&file, model);
            let name = format!("many_relocs-{}", model.name());
            (&MANY_RELOCS, name, file, path, Model::C(model))
        }
        Job::Rust(source, model) => {
            let file = fixture(source.file);
            let path = compile_rust(&file, model);
            let name = format!("{}-{}", file_stem(&file), model.name());
            (source, name, file, path, Model::Rust(model))
        }
        Job::Assembly(source) => {
            let file = fixture(source.file);
            let path = assemble(&file);
            (source, file_stem(&file), file, path, Model::Assembly)
        }
    };
    let weak_undefined: BTreeSet<String> = source.weak.iter().map(|s| s.to_string()).collect();
    let mut undefined: BTreeSet<String> = source.undefined.iter().map(|s| s.to_string()).collect();
    undefined.extend(weak_undefined.iter().cloned());
    Some(Fixture {
        name,
        source: fixture_source,
        path,
        model,
        undefined,
        weak_undefined,
        after: source.after,
        always_fails: source.always_fails,
    })
}

/// Maps `work` over `items` on a few threads, keeping the order. A panic in
/// any item panics the caller (after the other threads finish).
fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else {
                    break;
                };
                let result = work(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|result| result.expect("every item was built"))
        .collect()
}

/// One relocation as `llvm-readelf-22 -r` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// The relocation section (`.rela.text`).
    pub section: String,
    pub offset: u64,
    /// `R_AARCH64_CALL26`, ...
    pub kind: String,
    /// The symbol's name, a section's name for section symbols, empty for
    /// symbol index 0.
    pub symbol: String,
    pub addend: i64,
}

/// Every relocation of an object, from `llvm-readelf-22 -r`.
///
/// The readelf helpers below remember the output per object for the process.
pub fn relocations(object: &Path) -> Vec<Relocation> {
    let text = readelf_all(object);
    let mut section = String::new();
    let mut list = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Relocation section '") {
            section = rest.split('\'').next().unwrap_or_default().to_string();
            continue;
        }
        // "Offset Info Type [SymValue SymName] (+|-) Addend"
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || !fields[2].starts_with("R_") {
            continue;
        }
        let offset = u64::from_str_radix(fields[0], 16)
            .unwrap_or_else(|e| panic!("bad offset in {line:?}: {e}"));
        let (symbol, sign, addend) = match fields.len() {
            // No symbol: "Offset Info Type Addend" (llvm-readelf may also
            // print the addend with a sign).
            4 => (String::new(), "+", fields[3]),
            5 => (String::new(), fields[3], fields[4]),
            7 => (fields[4].to_string(), fields[5], fields[6]),
            _ => panic!(
                "unexpected relocation line in {}: {line:?}",
                object.display()
            ),
        };
        let magnitude = i64::from_str_radix(addend, 16)
            .unwrap_or_else(|e| panic!("bad addend in {line:?}: {e}"));
        list.push(Relocation {
            section: section.clone(),
            offset,
            kind: fields[2].to_string(),
            symbol,
            addend: if sign == "-" { -magnitude } else { magnitude },
        });
    }
    list
}

/// The relocation types used anywhere in an object (`"R_AARCH64_CALL26"`).
pub fn relocation_types(object: &Path) -> BTreeSet<String> {
    relocations(object)
        .into_iter()
        .map(|relocation| relocation.kind)
        .collect()
}

/// Undefined symbols of an object (`llvm-readelf-22 -s`, Ndx `UND`, without
/// the null symbol), with their binding (`GLOBAL`, `WEAK`).
pub fn undefined_symbols(object: &Path) -> BTreeSet<(String, String)> {
    let text = readelf_all(object);
    text.lines()
        .filter_map(|line| {
            // "   Num:    Value          Size Type    Bind   Vis      Ndx Name"
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[0].ends_with(':') || fields[6] != "UND" {
                return None;
            }
            Some((fields[7].to_string(), fields[4].to_string()))
        })
        .collect()
}

/// `e_machine` and `e_type` as llvm-readelf names them: ("AArch64",
/// "REL (Relocatable file)").
pub fn machine_and_type(object: &Path) -> (String, String) {
    let text = readelf_all(object);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .map(|value| value.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in the header of {}", object.display()))
    };
    (field("Machine:"), field("Type:"))
}

/// Names of the COMDAT groups of an object (`llvm-readelf-22 -g`).
pub fn comdat_groups(object: &Path) -> BTreeSet<String> {
    let text = readelf_all(object);
    text.lines()
        .filter_map(|line| {
            // "COMDAT group section [    4] `.group' [sel_var] contains ..."
            let rest = line.strip_prefix("COMDAT group section")?;
            let (_, after) = rest.split_once("' [")?;
            Some(after.split(']').next()?.to_string())
        })
        .collect()
}

/// Runs `llvm-readelf-22` with `options` on an object, returns its output.
pub fn llvm_readelf(options: &[&str], object: &Path) -> String {
    let mut cmd = Command::new(LLVM_READELF);
    cmd.args(options).arg(object);
    let output = run_checked(&mut cmd);
    String::from_utf8(output.stdout).expect("llvm-readelf prints UTF-8")
}

/// `llvm-readelf-22 -h -r -s -g` of an object, run once per process and
/// object: cached objects never change under their name, and the checks read
/// the same objects many times. The parsers above each pick their own lines
/// out of the whole text.
fn readelf_all(object: &Path) -> Arc<str> {
    static OUTPUTS: OnceLock<Mutex<HashMap<PathBuf, Arc<str>>>> = OnceLock::new();
    let outputs = OUTPUTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(text) = outputs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(object)
    {
        return Arc::clone(text);
    }
    let text: Arc<str> = llvm_readelf(&["-h", "-r", "-s", "-g"], object).into();
    outputs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(object.to_path_buf(), Arc::clone(&text));
    text
}
