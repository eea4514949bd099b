//! The benchmark objects, generated and compiled at bench time.
//!
//! - `large_pic.o` / `large_nopic.o`: one C source of [`LARGE_FUNCTIONS`]
//!   functions (about 1 MiB of text and more than 15,000 relocations),
//!   compiled `-fPIC` and `-fno-pic`. The code avoids 32-bit absolute
//!   addresses (no jump tables, no addresses of globals in registers), so
//!   both builds link anywhere in the address space, as JITLink needs.
//! - `small.o`: a typical module of [`SMALL_FUNCTIONS`] functions.
//! - the scaling modules: one template object whose symbol names carry
//!   placeholders; module `k` is the template with its own number and the
//!   numbers of three earlier modules written into the string table, so 5,000
//!   distinct modules cost one compile.
//!
//! Objects are cached under the output directory by a hash of the source, the
//! flags and the compiler's version, so a second run compiles nothing.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Functions in the large object.
pub const LARGE_FUNCTIONS: usize = 3000;
/// Functions in the small module and in each scaling module.
pub const SMALL_FUNCTIONS: usize = 20;

/// Flags every object is compiled with (besides the code model): no unwind
/// tables (modload drops `.eh_frame`; this keeps the bytes the same for
/// everyone), no stack protector, and no jump tables (absolute addresses in
/// `-fno-pic` code).
pub const BASE_FLAGS: &[&str] = &[
    "-c",
    "-O2",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-fno-jump-tables",
];

/// Host functions the scaling modules import, besides their predecessors.
pub const SCALE_HOST_FUNCTIONS: &[&str] = &["host_add"];
/// Host data the scaling modules import.
pub const SCALE_HOST_DATA: &[&str] = &["host_counter"];
/// The functions of module 0, which the host stands in for: module 1 imports them.
pub const SCALE_ROOT_IMPORTS: &[&str] = &["m000000_f1", "m000000_f2", "m000000_f3"];

/// Placeholders in the scaling template: its own number and three earlier modules'.
const SELF_MARK: &str = "AAAAAA";
const EARLIER_MARKS: [&str; 3] = ["BBBBBB", "CCCCCC", "DDDDDD"];

/// One compiled object on disk.
#[derive(Clone, Debug)]
pub struct BenchObject {
    /// Short name (`large_pic`, `small`, ...).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Undefined symbols it imports (`nm -u`).
    pub imports: Vec<String>,
}

/// Every benchmark object.
#[derive(Clone, Debug)]
pub struct Objects {
    /// The directory they live in.
    pub dir: PathBuf,
    /// `large_pic.o`.
    pub large_pic: BenchObject,
    /// `large_nopic.o`.
    pub large_nopic: BenchObject,
    /// `small.o`.
    pub small: BenchObject,
    /// The scaling template, before its names are filled in.
    pub scale_template: BenchObject,
}

impl Objects {
    /// The objects compared against LLVM, by name.
    pub fn comparison_set(&self) -> [&BenchObject; 3] {
        [&self.large_pic, &self.large_nopic, &self.small]
    }
}

/// Where objects are cached: `$MODLOAD_BENCH_DIR`, else
/// `$CARGO_TARGET_DIR/bench-objects`, else the workspace's `target/bench-objects`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODLOAD_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-objects")
}

/// Builds (or finds in the cache) every object in `dir`. The two large
/// compiles run in parallel.
pub fn build_all(dir: &Path) -> Result<Objects, String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let large = large_source(LARGE_FUNCTIONS);
    let (pic, nopic) = std::thread::scope(|scope| {
        let pic = scope.spawn(|| compile(dir, "large_pic", &large, &["-fPIC"]));
        let nopic = compile(dir, "large_nopic", &large, &["-fno-pic"]);
        (
            pic.join()
                .unwrap_or_else(|_| Err("compile thread panicked".into())),
            nopic,
        )
    });
    Ok(Objects {
        dir: dir.to_path_buf(),
        large_pic: pic?,
        large_nopic: nopic?,
        small: compile(dir, "small", &small_source(), &["-fPIC"])?,
        scale_template: compile(dir, "scale_template", &scale_source(), &["-fPIC"])?,
    })
}

/// Builds (or finds in the cache) only the small module and the scaling
/// template: the quick part of [`build_all`], for tests.
pub fn build_small(dir: &Path) -> Result<(BenchObject, BenchObject), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    Ok((
        compile(dir, "small", &small_source(), &["-fPIC"])?,
        compile(dir, "scale_template", &scale_source(), &["-fPIC"])?,
    ))
}

/// One function body, shared by every object so that all of them look alike:
/// three calls that stay in the object (or go to `call_*`), reads and writes
/// of globals, a string function from libc and some arithmetic.
fn function(out: &mut String, prefix: &str, index: usize, calls: [&str; 4], globals: usize) {
    let [a, b, c, d] = calls;
    let ga = (index * 5) % globals;
    let gb = (index * 11 + 3) % globals;
    let text = index % 16;
    let _ = write!(
        out,
        "F long {prefix}f{index}(long x, long y) {{
    if (x <= 0) return {prefix}g{ga} + y;
    long a = {a}(x - 1, y ^ {index}) * {m};
    long b = {b}(x - 2, a + {prefix}g{gb});
    if (a > b) {{
        {prefix}g{ga} += a - b;
        return {c}(x - 3, b) + (long)strnlen({prefix}texts[{text}], (size_t)x);
    }}
    long t = (a * 31 + b) ^ (y >> 3);
    t = t * t + {index} * (t >> 7) - (t << 2);
    t = (t / {q}) + (t % {r}) * {s};
    return {d}(x - 1, t) + {prefix}g{gb} * {u};
}}
",
        m = index * 3 + 1,
        q = index % 13 + 3,
        r = index % 11 + 5,
        s = index % 7 + 2,
        u = index % 17 + 2,
    );
}

/// Globals, strings and prototypes for `count` functions named `{prefix}f{i}`.
fn prelude(out: &mut String, prefix: &str, count: usize, globals: usize) {
    out.push_str("#include <string.h>\n#define F __attribute__((noinline, noclone))\n");
    for index in 0..count {
        let _ = writeln!(out, "F long {prefix}f{index}(long, long);");
    }
    for index in 0..globals {
        let _ = writeln!(out, "long {prefix}g{index} = {index};");
    }
    // Strings reached through a table of pointers (64-bit absolute
    // relocations), so `-fno-pic` code never needs a 32-bit absolute address.
    out.push_str("char *const ");
    out.push_str(prefix);
    out.push_str("texts[16] = {");
    for index in 0..16 {
        let _ = write!(out, "\"text {index}\",");
    }
    out.push_str("};\n");
}

/// A call target among the object's own functions.
fn own(prefix: &str, count: usize, index: usize, step: usize, offset: usize) -> String {
    format!("{prefix}f{}", (index * step + offset) % count)
}

/// The large object: [`LARGE_FUNCTIONS`] functions, a table of function
/// pointers (absolute 64-bit relocations) and a `main` that returns 0 at once.
pub fn large_source(count: usize) -> String {
    let mut out = String::new();
    let globals = count / 4;
    prelude(&mut out, "", count, globals);
    for index in 0..count {
        let calls = [
            own("", count, index, 7, 1),
            own("", count, index, 13, 5),
            own("", count, index, 31, 11),
            own("", count, index, 3, 2),
        ];
        let calls = [&*calls[0], &*calls[1], &*calls[2], &*calls[3]];
        function(&mut out, "", index, calls, globals);
    }
    table_and_main(&mut out, "", count);
    out
}

fn table_and_main(out: &mut String, prefix: &str, count: usize) {
    out.push_str("long (*const table[])(long, long) = {");
    for index in (0..count).step_by(8) {
        let _ = write!(out, "{prefix}f{index},");
    }
    out.push_str("};\n");
    let _ = writeln!(
        out,
        "int main(int argc, char **argv) {{ (void)argv; \
         return (int)({prefix}f0(argc - 1, 0) & 0) + (int)(table[0] == 0); }}"
    );
}

/// The typical small module: [`SMALL_FUNCTIONS`] functions and a `main`.
pub fn small_source() -> String {
    let count = SMALL_FUNCTIONS;
    let mut out = String::new();
    prelude(&mut out, "", count, 8);
    for index in 0..count {
        let calls = [
            own("", count, index, 7, 1),
            own("", count, index, 13, 5),
            own("", count, index, 3, 11),
            own("", count, index, 3, 2),
        ];
        let calls = [&*calls[0], &*calls[1], &*calls[2], &*calls[3]];
        function(&mut out, "", index, calls, 8);
    }
    table_and_main(&mut out, "", count);
    out
}

/// The scaling template: module `AAAAAA`'s functions, some of which call
/// `f1`/`f2`/`f3` of modules `BBBBBB`, `CCCCCC` and `DDDDDD` and the host's
/// `host_add` and `host_counter`.
pub fn scale_source() -> String {
    let count = SMALL_FUNCTIONS;
    let prefix = format!("m{SELF_MARK}_");
    let mut out = String::new();
    prelude(&mut out, &prefix, count, 8);
    out.push_str("extern long host_counter;\nlong host_add(long, long);\n");
    for (mark, function) in EARLIER_MARKS.iter().zip(1..) {
        let _ = writeln!(out, "long m{mark}_f{function}(long, long);");
    }
    for index in 0..count {
        let calls = [
            own(&prefix, count, index, 7, 1),
            // Every fifth function calls an earlier module, every seventh the host.
            match index % 5 {
                0 => format!("m{}_f{}", EARLIER_MARKS[index / 5 % 3], index / 5 % 3 + 1),
                _ => own(&prefix, count, index, 13, 5),
            },
            if index % 7 == 0 {
                String::from("host_add")
            } else {
                own(&prefix, count, index, 3, 11)
            },
            own(&prefix, count, index, 3, 2),
        ];
        let calls = [&*calls[0], &*calls[1], &*calls[2], &*calls[3]];
        function(&mut out, &prefix, index, calls, 8);
    }
    let _ = writeln!(
        out,
        "F long {prefix}counter(void) {{ return host_counter + {prefix}g0; }}"
    );
    out
}

/// The name module `number` gives its function `f{function}`.
pub fn scale_symbol(number: usize, function: usize) -> String {
    format!("m{number:06}_f{function}")
}

/// The earlier modules module `number` (1-based) imports from: its
/// predecessor and two pseudo-random earlier ones (0 is the host).
pub fn scale_imports(number: usize) -> [usize; 3] {
    let earlier = |salt: usize| (number.wrapping_mul(2_654_435_761) ^ salt) % number;
    [number - 1, earlier(0x9e37), earlier(0x7f4a)]
}

/// Module `number` (1-based) of the scaling set: the template with its names
/// written in. Only the string table changes.
pub fn scale_module(template: &[u8], number: usize) -> Result<Vec<u8>, String> {
    if number == 0 || number > 999_999 {
        return Err(format!("scaling module number {number} out of range"));
    }
    let mut bytes = template.to_vec();
    let strtab = string_table(&bytes).ok_or("scaling template has no .strtab")?;
    let imports = scale_imports(number);
    let table = bytes
        .get_mut(strtab)
        .ok_or("scaling template's .strtab is out of bounds")?;
    replace_all(table, SELF_MARK, &format!("{number:06}"));
    for (mark, import) in EARLIER_MARKS.iter().zip(imports) {
        replace_all(table, mark, &format!("{import:06}"));
    }
    Ok(bytes)
}

fn replace_all(haystack: &mut [u8], from: &str, to: &str) {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut at = 0;
    while let Some(found) = haystack
        .get(at..)
        .and_then(|rest| rest.windows(from.len()).position(|window| window == from))
    {
        if let Some(slot) = haystack.get_mut(at + found..at + found + to.len()) {
            slot.copy_from_slice(to);
        }
        at += found + from.len();
    }
}

/// The byte range of `.strtab` in a little-endian ELF64 object.
fn string_table(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let word = |at: usize, len: usize| -> Option<u64> {
        let field = bytes.get(at..at + len)?;
        let mut value = [0u8; 8];
        value.get_mut(..len)?.copy_from_slice(field);
        Some(u64::from_le_bytes(value))
    };
    let shoff = usize::try_from(word(0x28, 8)?).ok()?;
    let shentsize = usize::try_from(word(0x3a, 2)?).ok()?;
    let shnum = usize::try_from(word(0x3c, 2)?).ok()?;
    let shstrndx = usize::try_from(word(0x3e, 2)?).ok()?;
    let header = |index: usize| shoff + index * shentsize;
    let names = usize::try_from(word(header(shstrndx) + 0x18, 8)?).ok()?;
    (0..shnum).find_map(|index| {
        let name = usize::try_from(word(header(index), 4)?).ok()?;
        let name = bytes.get(names + name..)?;
        if !name.starts_with(b".strtab\0") {
            return None;
        }
        let offset = usize::try_from(word(header(index) + 0x18, 8)?).ok()?;
        let size = usize::try_from(word(header(index) + 0x20, 8)?).ok()?;
        Some(offset..offset + size)
    })
}

/// Compiles `source` with gcc into `dir/{name}.o`, unless an object from the
/// same source, flags and compiler is already there.
fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> Result<BenchObject, String> {
    let version = Command::new("gcc")
        .arg("--version")
        .output()
        .map_err(|error| format!("gcc: {error} (run scripts/install-deps.sh host)"))?;
    let mut hasher = DefaultHasher::new();
    (source, flags, BASE_FLAGS, &version.stdout).hash(&mut hasher);
    let stamp = format!("{:016x}", hasher.finish());
    let path = dir.join(format!("{name}.o"));
    let stamp_path = dir.join(format!("{name}.stamp"));
    let cached = std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    if !cached || !path.exists() {
        // Build under names of this process and thread, then rename into
        // place (atomic), so parallel builders never read half an object.
        let unique = format!("{}-{:?}", std::process::id(), std::thread::current().id());
        let unique: String = unique.chars().filter(char::is_ascii_alphanumeric).collect();
        let source_path = dir.join(format!("{name}.c"));
        let scratch_source = dir.join(format!("{name}.{unique}.c"));
        let scratch_object = dir.join(format!("{name}.{unique}.o"));
        let scratch_stamp = dir.join(format!("{name}.{unique}.stamp"));
        std::fs::write(&scratch_source, source)
            .map_err(|error| format!("{}: {error}", scratch_source.display()))?;
        let output = Command::new("gcc")
            .args(BASE_FLAGS)
            .args(flags)
            .arg("-o")
            .arg(&scratch_object)
            .arg(&scratch_source)
            .output()
            .map_err(|error| format!("gcc: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "gcc failed on {}:\n{}",
                scratch_source.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::fs::write(&scratch_stamp, &stamp)
            .map_err(|error| format!("{}: {error}", scratch_stamp.display()))?;
        for (from, to) in [
            (&scratch_source, &source_path),
            (&scratch_object, &path),
            (&scratch_stamp, &stamp_path),
        ] {
            std::fs::rename(from, to).map_err(|error| format!("{}: {error}", to.display()))?;
        }
    }
    let bytes = std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(BenchObject {
        name: name.to_owned(),
        imports: undefined_symbols(&path)?,
        path,
        bytes,
    })
}

/// `nm -u`: the names an object imports.
fn undefined_symbols(path: &Path) -> Result<Vec<String>, String> {
    let output = Command::new("nm")
        .args(["-u", "--format=just-symbols"])
        .arg(path)
        .output()
        .map_err(|error| format!("nm: {error} (run scripts/install-deps.sh host)"))?;
    if !output.status.success() {
        return Err(format!("nm failed on {}", path.display()));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        // Each linker provides its own GOT: not an import.
        .filter(|name| !name.is_empty() && name != "_GLOBAL_OFFSET_TABLE_")
        .collect())
}
