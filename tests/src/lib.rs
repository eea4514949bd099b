//! Builds the ELF fixtures for modload's x86_64 host tests.
//!
//! The fixture sources live in `tests/fixtures/` (see the README there). The
//! builders below turn them into relocatable objects with gcc, g++, rustc or
//! gas and return the object's path.
//!
//! Objects are cached in `target/fixtures/` under a name that carries a hash
//! of everything that decides the output: the tool's version, the flags, the
//! source and the headers beside it. A changed fixture is rebuilt, an
//! unchanged one is not. Test threads and test processes may build the same
//! fixture at the same time: each build runs in a scratch directory of its
//! own and its result is renamed into place, which is atomic, so nobody ever
//! reads a half-written object and the loser of a race just replaces the
//! file with an identical one. Set `MODLOAD_FIXTURE_DIR` to cache elsewhere.
//!
//! This is test support code: every failure panics with a message that says
//! what went wrong, including the compiler's stderr.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub mod aarch64;
pub mod oracle;

/// The README's examples run as doc tests of this crate, which is not
/// published, so they may use both `modload` and `modload-platform` (host
/// feature) and the published packages need not carry the README's files.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Flags for every C and C++ fixture, whatever the model. No unwind tables
/// and no stack protector, so objects carry neither `.eh_frame` nor an import
/// of `__stack_chk_fail`.
const GCC_BASE_FLAGS: &[&str] = &[
    "-c",
    "-O2",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
];

/// Extra flags for C++: none of the features that need a C++ runtime.
pub(crate) const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-fno-exceptions",
    "-fno-rtti",
    "-fno-threadsafe-statics",
];

/// How a C (or C++) fixture is compiled (x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CModel {
    /// `-fPIC`: globals through the GOT, calls through the PLT.
    Pic,
    /// gcc's defaults, which on Debian mean `-fPIE`.
    PieDefault,
    /// `-fno-pic -mcmodel=small`: absolute 32-bit addresses (needs < 2 GiB).
    NoPicSmall,
    /// `-fno-pic -mcmodel=kernel -mno-red-zone`: sign-extended 32-bit
    /// addresses (needs the top 2 GiB, or the low 2 GiB).
    Kernel,
    /// `-fno-pic -mcmodel=large`: 64-bit absolute addresses everywhere.
    NoPicLarge,
    /// `-fPIC -mcmodel=large`: GOTPC64/GOTOFF64/GOT64/PLTOFF64.
    PicLarge,
}

impl CModel {
    /// Every model, in declaration order.
    pub const ALL: [CModel; 6] = [
        CModel::Pic,
        CModel::PieDefault,
        CModel::NoPicSmall,
        CModel::Kernel,
        CModel::NoPicLarge,
        CModel::PicLarge,
    ];

    /// The gcc flags that select this model.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            CModel::Pic => &["-fPIC"],
            CModel::PieDefault => &[],
            CModel::NoPicSmall => &["-fno-pic", "-mcmodel=small"],
            CModel::Kernel => &["-fno-pic", "-mcmodel=kernel", "-mno-red-zone"],
            CModel::NoPicLarge => &["-fno-pic", "-mcmodel=large"],
            CModel::PicLarge => &["-fPIC", "-mcmodel=large"],
        }
    }

    /// A short name, used in cached file names and test messages.
    pub fn name(self) -> &'static str {
        match self {
            CModel::Pic => "pic",
            CModel::PieDefault => "pie",
            CModel::NoPicSmall => "nopic-small",
            CModel::Kernel => "kernel",
            CModel::NoPicLarge => "nopic-large",
            CModel::PicLarge => "pic-large",
        }
    }
}

/// How a Rust fixture is compiled (x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RustModel {
    /// `-C relocation-model=pic -C code-model=small`
    Pic,
    /// `-C relocation-model=static -C code-model=small`
    Static,
    /// `-C relocation-model=static -C code-model=kernel`
    StaticKernel,
    /// `-C relocation-model=static -C code-model=large`
    StaticLarge,
}

impl RustModel {
    /// Every model, in declaration order.
    pub const ALL: [RustModel; 4] = [
        RustModel::Pic,
        RustModel::Static,
        RustModel::StaticKernel,
        RustModel::StaticLarge,
    ];

    /// The `-C relocation-model` value.
    pub fn relocation_model(self) -> &'static str {
        match self {
            RustModel::Pic => "pic",
            RustModel::Static | RustModel::StaticKernel | RustModel::StaticLarge => "static",
        }
    }

    /// The `-C code-model` value.
    pub fn code_model(self) -> &'static str {
        match self {
            RustModel::Pic | RustModel::Static => "small",
            RustModel::StaticKernel => "kernel",
            RustModel::StaticLarge => "large",
        }
    }

    /// A short name, used in cached file names and test messages.
    pub fn name(self) -> &'static str {
        match self {
            RustModel::Pic => "pic",
            RustModel::Static => "static",
            RustModel::StaticKernel => "static-kernel",
            RustModel::StaticLarge => "static-large",
        }
    }
}

/// Compiles a C file with gcc into a relocatable object:
/// `gcc -c -O2 -fno-asynchronous-unwind-tables -fno-stack-protector`, the
/// flags of `model`, then `extra`. Headers in the source's directory count
/// towards the cache key, so editing `prog/prog.h` rebuilds `prog/*.c`.
pub fn compile_c(source: &Path, model: CModel, extra: &[&str]) -> PathBuf {
    compile_with_gcc_driver("gcc", &[], source, model, extra)
}

/// Like [`compile_c`], with g++ and `-std=c++17 -fno-exceptions -fno-rtti
/// -fno-threadsafe-statics`, so the object needs no C++ runtime.
pub fn compile_cxx(source: &Path, model: CModel, extra: &[&str]) -> PathBuf {
    compile_with_gcc_driver("g++", CXX_FLAGS, source, model, extra)
}

fn compile_with_gcc_driver(
    driver: &str,
    language_flags: &[&str],
    source: &Path,
    model: CModel,
    extra: &[&str],
) -> PathBuf {
    let args: Vec<&str> = GCC_BASE_FLAGS
        .iter()
        .chain(language_flags)
        .chain(model.flags())
        .chain(extra)
        .copied()
        .collect();

    let mut key = CacheKey::new(driver);
    key.add(tool_version(driver).as_bytes());
    key.add_strs(&args);
    key.add_source(source);
    key.add_headers_beside(source);

    let mut variant = model.name().to_string();
    if !extra.is_empty() {
        // Different extras already give a different hash; this only keeps
        // the cache directory readable.
        variant.push_str("-x");
    }
    build_cached(
        &file_stem(source),
        &variant,
        "o",
        key.finish(),
        |out, _scratch| {
            let mut cmd = Command::new(driver);
            cmd.args(&args).arg(source).arg("-o").arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// How every Rust fixture becomes one relocatable object: a library emitted
/// as a single object (one codegen unit), no unwinding, no overflow checks, no
/// debug info.
pub(crate) const RUST_OBJECT_FLAGS: &[&str] = &[
    "--crate-type=lib",
    "--emit=obj",
    "--edition",
    "2021",
    "-C",
    "panic=abort",
    "-C",
    "opt-level=2",
    "-C",
    "overflow-checks=off",
    "-C",
    "debuginfo=0",
    "-C",
    "codegen-units=1",
];

/// Compiles a single-file `no_std` Rust library into one relocatable object:
/// `rustc --emit=obj --crate-type=lib --edition 2021 -C panic=abort
/// -C opt-level=2 -C overflow-checks=off -C debuginfo=0 -C codegen-units=1`
/// and the relocation and code model of `model`. One codegen unit, so that
/// rustc writes exactly one object.
pub fn compile_rust(source: &Path, model: RustModel) -> PathBuf {
    let rustc = rustc_program();
    let crate_name = file_stem(source).replace('-', "_");
    let relocation_model = format!("relocation-model={}", model.relocation_model());
    let code_model = format!("code-model={}", model.code_model());
    let mut args: Vec<&str> = vec!["--crate-name", &crate_name];
    args.extend_from_slice(RUST_OBJECT_FLAGS);
    args.extend(["-C", &relocation_model, "-C", &code_model]);

    let mut key = CacheKey::new("rustc");
    key.add(tool_version(&rustc).as_bytes());
    key.add_strs(&args);
    key.add_source(source);

    build_cached(
        &crate_name,
        model.name(),
        "o",
        key.finish(),
        |out, scratch| {
            // rustc writes intermediate files next to its output; running it in
            // the private scratch directory keeps racing builds apart.
            let mut cmd = Command::new(&rustc);
            cmd.current_dir(scratch)
                .args(&args)
                .arg(source)
                .arg("-o")
                .arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// Assembles a GNU as source (`gcc -c x.s`).
pub fn assemble(source: &Path) -> PathBuf {
    let mut key = CacheKey::new("as");
    key.add(tool_version("gcc").as_bytes());
    key.add_source(source);

    build_cached(
        &file_stem(source),
        "as",
        "o",
        key.finish(),
        |out, _scratch| {
            let mut cmd = Command::new("gcc");
            cmd.arg("-c").arg(source).arg("-o").arg(out);
            run_checked(&mut cmd);
        },
    )
}

/// Path of `tests/fixtures/<name>`; `name` may contain a subdirectory
/// (`"prog/main.c"`). Panics if there is no such file, so a typo fails loudly.
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    assert!(path.exists(), "no fixture {name} at {}", path.display());
    path
}

/// Reads a whole file.
pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Links the given objects natively with gcc into an executable, runs it
/// with args, returns (stdout, exit code).
///
/// The link is `gcc -no-pie <objects> -lm`: non-PIE so that objects built
/// without PIC (`NoPicSmall`, `Kernel`) link too, and with libm for the test
/// program. A process killed by a signal reports 128 + the signal number,
/// as a shell would. The program's stderr is passed on to the test's stderr.
pub fn run_native(objects: &[PathBuf], args: &[&str]) -> (String, i32) {
    assert!(!objects.is_empty(), "run_native needs at least one object");

    let link_flags = ["-no-pie"];
    let libs = ["-lm"];
    let mut key = CacheKey::new("link");
    key.add(tool_version("gcc").as_bytes());
    key.add_strs(&link_flags);
    key.add_strs(&libs);
    for object in objects {
        key.add(&read(object));
    }

    // Named after the first object's source: cached objects are called
    // "<source>-<model>-<hash>".
    let first = file_stem(&objects[0]);
    let stem = first.split('-').next().unwrap_or("native");
    let exe = build_cached(stem, "linked", "bin", key.finish(), |out, _scratch| {
        let mut cmd = Command::new("gcc");
        cmd.args(link_flags)
            .args(objects)
            .args(libs)
            .arg("-o")
            .arg(out);
        run_checked(&mut cmd);
    });

    let output = Command::new(&exe)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    if !output.stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    let code = match (output.status.code(), output.status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => panic!("{} ended without status or signal", exe.display()),
    };
    let stdout = String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("{} printed non-UTF-8 output: {e}", exe.display()));
    (stdout, code)
}

/// Names of the undefined symbols in an object's `.symtab` (`readelf -sW`,
/// Ndx `UND`, without the null symbol). Note that gas adds
/// `_GLOBAL_OFFSET_TABLE_` as an undefined symbol to any object that uses a
/// GOT relocation, so it shows up here for PIC and large-model objects.
pub fn undefined_symbols(object: &Path) -> BTreeSet<String> {
    symbol_rows(object)
        .into_iter()
        .filter(|row| row.section == "UND")
        .map(|row| row.name)
        .collect()
}

/// Names of the symbols an object defines for others: binding GLOBAL, WEAK
/// or UNIQUE (g++'s STB_GNU_UNIQUE), in a section or absolute.
pub fn exported_symbols(object: &Path) -> BTreeSet<String> {
    symbol_rows(object)
        .into_iter()
        .filter(|row| row.section != "UND")
        .filter(|row| matches!(row.binding.as_str(), "GLOBAL" | "WEAK" | "UNIQUE"))
        .map(|row| row.name)
        .collect()
}

/// The relocation types used anywhere in an object, as readelf names them
/// (`"R_X86_64_PC32"`, ...), from `readelf -rW`.
pub fn relocation_types(object: &Path) -> BTreeSet<String> {
    let text = readelf("-rW", object);
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|field| field.starts_with("R_X86_64_"))
        .map(str::to_string)
        .collect()
}

/// Section names of an object, from `readelf -SW`.
pub fn section_names(object: &Path) -> BTreeSet<String> {
    let text = readelf("-SW", object);
    text.lines()
        .filter_map(|line| {
            // Rows look like "  [ 5] .rodata.str1.1 PROGBITS ...": the name
            // follows the closing bracket of the index.
            let (_, rest) = line.trim_start().strip_prefix('[')?.split_once(']')?;
            let name = rest.split_whitespace().next()?;
            (name != "Name" && name != "NULL").then(|| name.to_string())
        })
        .collect()
}

/// The cache directory, created if needed: `$MODLOAD_FIXTURE_DIR`, or
/// `target/fixtures` of the workspace.
pub fn cache_dir() -> PathBuf {
    let dir = match std::env::var_os("MODLOAD_FIXTURE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate lives inside the workspace")
            .join("target")
            .join("fixtures"),
    };
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create fixture cache {}: {e}", dir.display()));
    dir
}

struct SymbolRow {
    binding: String,
    section: String,
    name: String,
}

fn symbol_rows(object: &Path) -> Vec<SymbolRow> {
    let text = readelf("-sW", object);
    text.lines()
        .filter_map(|line| {
            // "   Num:    Value          Size Type    Bind   Vis      Ndx Name"
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[0].ends_with(':') || fields[0] == "Num:" {
                return None;
            }
            Some(SymbolRow {
                binding: fields[4].to_string(),
                section: fields[6].to_string(),
                name: fields[7].to_string(),
            })
        })
        .collect()
}

fn readelf(option: &str, object: &Path) -> String {
    let mut cmd = Command::new("readelf");
    cmd.arg(option).arg(object);
    let output = run_checked(&mut cmd);
    String::from_utf8(output.stdout).expect("readelf prints UTF-8")
}

/// Builds `<stem>-<variant>-<hash>.<ext>` in the cache unless it is there.
/// `build` gets the path to write and a private scratch directory.
pub(crate) fn build_cached(
    stem: &str,
    variant: &str,
    ext: &str,
    hash: u64,
    build: impl FnOnce(&Path, &Path),
) -> PathBuf {
    let dir = cache_dir();
    let name = format!("{stem}-{variant}-{hash:016x}.{ext}");
    let target = dir.join(&name);
    if target.exists() {
        return target;
    }

    static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(0);
    let scratch = ScratchDir::new(dir.join(format!(
        ".build-{}-{}",
        std::process::id(),
        NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed)
    )));
    let out = scratch.0.join(&name);
    build(&out, &scratch.0);
    assert!(out.exists(), "building {name} produced no file");
    fs::rename(&out, &target)
        .unwrap_or_else(|e| panic!("cannot move {} to {}: {e}", out.display(), target.display()));
    target
}

/// Removes its directory when dropped, also when a build panics.
pub(crate) struct ScratchDir(pub(crate) PathBuf);

impl ScratchDir {
    pub(crate) fn new(path: PathBuf) -> Self {
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// FNV-1a over length-prefixed items: stable across Rust versions (unlike
/// `DefaultHasher`), so the cache survives a toolchain update of the tests.
pub(crate) struct CacheKey(u64);

impl CacheKey {
    pub(crate) fn new(kind: &str) -> Self {
        let mut key = CacheKey(0xcbf2_9ce4_8422_2325);
        key.add(kind.as_bytes());
        key
    }

    pub(crate) fn add(&mut self, bytes: &[u8]) {
        for byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn add_strs(&mut self, items: &[&str]) {
        for item in items {
            self.add(item.as_bytes());
        }
    }

    pub(crate) fn add_source(&mut self, source: &Path) {
        // The name matters too: it ends up in the object (STT_FILE).
        self.add(file_name(source).as_bytes());
        self.add(&read(source));
    }

    pub(crate) fn add_headers_beside(&mut self, source: &Path) {
        let dir = match source.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let mut headers: Vec<PathBuf> = entries
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| {
                let ext = path.extension().and_then(|ext| ext.to_str());
                matches!(ext, Some("h" | "hpp" | "inc"))
            })
            .collect();
        headers.sort();
        for header in headers {
            self.add_source(&header);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_else(|| panic!("{} has no UTF-8 file name", path.display()))
        .to_string()
}

pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_else(|| panic!("{} has no UTF-8 file name", path.display()))
        .to_string()
}

/// rustc of the toolchain that runs the tests: cargo exports `RUSTC` to
/// build scripts only, but a rustup proxy found on PATH honours the
/// `RUSTUP_TOOLCHAIN` cargo was started with.
fn rustc_program() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string())
}

/// First line of `<tool> --version`, once per process and tool.
pub(crate) fn tool_version(tool: &str) -> String {
    static VERSIONS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let versions = VERSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut versions = versions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    versions
        .entry(tool.to_string())
        .or_insert_with(|| {
            let output = run_checked(Command::new(tool).arg("--version"));
            let text = String::from_utf8_lossy(&output.stdout);
            text.lines().next().unwrap_or_default().to_string()
        })
        .clone()
}

/// Runs a tool and panics, showing its output, unless it succeeds.
pub(crate) fn run_checked(cmd: &mut Command) -> Output {
    // Tool messages in English and readelf's layout as parsed above.
    cmd.env("LC_ALL", "C");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed ({})\n--- stderr ---\n{}\n--- stdout ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
    }
    output
}
