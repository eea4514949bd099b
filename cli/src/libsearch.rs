//! Finding what the toolchain would link for `-l NAME`, as `gcc`/`g++` and GNU
//! `ld` do: the same directories in the same order, `libNAME.so` before
//! `libNAME.a` in each, and GNU ld scripts (`GROUP`, `INPUT`, `AS_NEEDED`)
//! followed to the files they name.
//!
//! The directories are, in order: `LIBRARY_PATH` (which gcc passes to the
//! linker as `-L`), `LD_LIBRARY_PATH`, the compiler driver's own library
//! directories (`g++ -print-search-dirs`, then `cc`'s: g++ keeps
//! `libstdc++.so` in a directory of its own), and last the system's
//! directories, for when no driver answers, with the Debian multiarch name
//! of the machine the CLI runs on, which is the machine `modload run`'s
//! objects are for (`x86_64-linux-gnu`, `aarch64-linux-gnu`,
//! `riscv64-linux-gnu`; the drivers list their own multiarch directories).
//! Shared objects for another machine are passed over wherever they are.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use goblin::elf::header::{EM_AARCH64, EM_RISCV, EM_X86_64};

/// Scripts may name scripts; deeper than this is taken for a loop.
const MAX_SCRIPT_DEPTH: usize = 8;

/// The first bytes of a static archive.
const ARCHIVE_MAGIC: &[u8] = b"!<arch>\n";
/// The first bytes of an ELF file.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// A file the linker would take for a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkInput {
    /// An ELF shared object, to `dlopen`.
    Shared(PathBuf),
    /// A static archive with at least one member.
    Archive(PathBuf),
}

/// The directories `-l` searches, in order, without duplicates.
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// The toolchain's search path on this machine (see the module docs).
    pub fn from_toolchain() -> Self {
        let mut dirs = Vec::new();
        for variable in ["LIBRARY_PATH", "LD_LIBRARY_PATH"] {
            if let Some(paths) = std::env::var_os(variable) {
                dirs.extend(std::env::split_paths(&paths));
            }
        }
        for driver in ["g++", "cc"] {
            dirs.extend(driver_library_dirs(driver));
        }
        dirs.extend(system_library_dirs(&host_multiarch_dir()));
        Self::from_dirs(dirs)
    }

    /// A search path of exactly these directories (empty and missing ones,
    /// and repeats, are dropped).
    pub fn from_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut unique: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            if dir.as_os_str().is_empty() {
                continue;
            }
            // `/usr/lib/gcc/x86_64-linux-gnu/12/../../../x86_64-linux-gnu`
            // and `/usr/lib/x86_64-linux-gnu` are one directory.
            let Ok(dir) = fs::canonicalize(&dir) else {
                continue;
            };
            if dir.is_dir() && !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        Self { dirs: unique }
    }

    /// The directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// What `-l NAME` names: the first `libNAME.so` or `libNAME.a`, looking
    /// for both in each directory before the next, as `ld` does. `-l :FILE`
    /// looks for exactly `FILE`.
    pub fn find_library(&self, name: &str) -> Option<PathBuf> {
        let candidates = match name.strip_prefix(':') {
            Some(file) => vec![file.to_owned()],
            None => vec![format!("lib{name}.so"), format!("lib{name}.a")],
        };
        let machine = host_elf_machine();
        self.dirs.iter().find_map(|dir| {
            candidates
                .iter()
                .map(|file| dir.join(file))
                .find(|path| path.is_file() && is_for_machine(path, machine))
        })
    }

    /// The linker inputs `-l NAME` stands for, scripts followed; an error
    /// names the library and says where it was looked for.
    pub fn resolve_library(&self, name: &str) -> Result<Vec<LinkInput>, String> {
        let path = self.find_library(name).ok_or_else(|| {
            format!(
                "-l {name}: no lib{name}.so or lib{name}.a in {}",
                self.describe()
            )
        })?;
        self.expand(&path, 0)
            .map_err(|problem| format!("-l {name}: {problem}"))
    }

    /// The linker inputs the file at `path` stands for: itself if it is a
    /// shared object or a non-empty archive, nothing if it is an empty
    /// archive (glibc's `libpthread.a`, `libdl.a`: their functions moved
    /// into libc), and the inputs a linker script names otherwise.
    pub fn expand(&self, path: &Path, depth: usize) -> Result<Vec<LinkInput>, String> {
        let bytes = fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        if bytes.starts_with(ELF_MAGIC) {
            return Ok(vec![LinkInput::Shared(path.to_path_buf())]);
        }
        if bytes.starts_with(ARCHIVE_MAGIC) {
            return Ok(if archive_has_members(&bytes) {
                vec![LinkInput::Archive(path.to_path_buf())]
            } else {
                Vec::new()
            });
        }
        let Some(entries) = linker_script_inputs(&String::from_utf8_lossy(&bytes)) else {
            return Err(format!(
                "{}: neither a shared object, an archive nor a linker script",
                path.display()
            ));
        };
        if depth >= MAX_SCRIPT_DEPTH {
            return Err(format!(
                "{}: linker scripts nested more than {MAX_SCRIPT_DEPTH} deep",
                path.display()
            ));
        }
        let mut inputs = Vec::new();
        for entry in entries {
            let found = if let Some(name) = entry.strip_prefix("-l") {
                self.find_library(name).ok_or_else(|| {
                    format!(
                        "{}: names -l{name}, which is in none of {}",
                        path.display(),
                        self.describe()
                    )
                })?
            } else {
                self.find_script_file(&entry).ok_or_else(|| {
                    format!("{}: names {entry}, which does not exist", path.display())
                })?
            };
            for input in self.expand(&found, depth.saturating_add(1))? {
                // glibc's scripts name libc_nonshared.a beside libc.so.6: the
                // few functions in it are lent by this tool itself (see
                // `dl::nonshared`), and archives only ever matter for what
                // they define that nothing else does.
                if matches!(input, LinkInput::Archive(_)) {
                    continue;
                }
                if !inputs.contains(&input) {
                    inputs.push(input);
                }
            }
        }
        Ok(inputs)
    }

    /// A file a script names: as given if it has a directory part or exists
    /// in the current directory, else on the search path, as `ld` looks.
    fn find_script_file(&self, entry: &str) -> Option<PathBuf> {
        let given = PathBuf::from(entry);
        if entry.contains('/') || given.is_file() {
            return given.is_file().then_some(given);
        }
        self.dirs
            .iter()
            .map(|dir| dir.join(entry))
            .find(|path| path.is_file())
    }

    fn describe(&self) -> String {
        let dirs: Vec<String> = self
            .dirs()
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        format!("the library search path ({})", dirs.join(":"))
    }
}

/// The `libraries:` line of `DRIVER -print-search-dirs`, or nothing if the
/// driver is missing or prints no such line.
fn driver_library_dirs(driver: &str) -> Vec<PathBuf> {
    let Some(output) = ask(driver, "-print-search-dirs") else {
        return Vec::new();
    };
    output
        .lines()
        .find_map(|line| line.strip_prefix("libraries:"))
        .map(|dirs| {
            let dirs = dirs.trim_start();
            let dirs = dirs.strip_prefix('=').unwrap_or(dirs);
            std::env::split_paths(dirs).collect()
        })
        .unwrap_or_default()
}

/// The machines `modload` runs on: Rust's name for each architecture
/// (`std::env::consts::ARCH`, also the start of its Debian multiarch name)
/// and the ELF `e_machine` of its code.
const MACHINES: [(&str, u16); 3] = [
    ("x86_64", EM_X86_64),
    ("aarch64", EM_AARCH64),
    ("riscv64", EM_RISCV),
];

/// The Debian multiarch name of the architecture Rust calls `arch`, the
/// directory name in `/usr/lib/TUPLE`: `ARCH-linux-gnu` for each of
/// [`MACHINES`], and the usual guess for any other.
fn multiarch_tuple(arch: &str) -> String {
    format!("{arch}-linux-gnu")
}

/// `e_machine` of the code of the architecture Rust calls `arch`, if it is
/// one of [`MACHINES`].
fn elf_machine_of(arch: &str) -> Option<u16> {
    MACHINES
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, machine)| *machine)
}

/// The multiarch directory name of the machine the CLI runs on.
fn host_multiarch_dir() -> String {
    multiarch_tuple(std::env::consts::ARCH)
}

/// `e_machine` of the objects `modload run` loads here, if known.
fn host_elf_machine() -> Option<u16> {
    elf_machine_of(std::env::consts::ARCH)
}

/// Whether `path` could be linked for `machine` (an ELF `e_machine`; `None`
/// when it is not known, which takes any): a shared object for another
/// machine is passed over, as `ld` skips "incompatible" ones and goes on
/// searching. Linker scripts and archives are not ELF files and always
/// qualify.
fn is_for_machine(path: &Path, machine: Option<u16>) -> bool {
    let Some(this) = machine else {
        return true;
    };
    let mut header = [0u8; 20];
    let read = fs::File::open(path).and_then(|mut file| {
        use std::io::Read as _;
        file.read_exact(&mut header)
    });
    match (read, header.get(..4), header.get(18..20)) {
        (Ok(()), Some(b"\x7fELF"), Some(&[low, high])) => u16::from_le_bytes([low, high]) == this,
        _ => true,
    }
}

/// Where the system linker looks when the driver says nothing.
fn system_library_dirs(multiarch: &str) -> Vec<PathBuf> {
    [
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        String::from("/lib64"),
        String::from("/usr/lib64"),
        String::from("/lib"),
        String::from("/usr/lib"),
        format!("/usr/local/lib/{multiarch}"),
        String::from("/usr/local/lib"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// `PROGRAM OPTION`'s standard output, if it ran and succeeded.
fn ask(program: &str, option: &str) -> Option<String> {
    let output = Command::new(program)
        .arg(option)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether an archive holds any member besides its symbol and long-name
/// tables. Each member has a 60-byte header whose name field starts the
/// header and whose decimal size is at bytes 48..58; members are 2-aligned.
fn archive_has_members(bytes: &[u8]) -> bool {
    let mut at = ARCHIVE_MAGIC.len();
    while let Some(header) = at.checked_add(60).and_then(|end| bytes.get(at..end)) {
        let name = header.get(..16).unwrap_or_default();
        let is_table = name.starts_with(b"/ ")
            || name.starts_with(b"// ")
            || name.starts_with(b"/SYM64/")
            || name.starts_with(b"__.SYMDEF");
        if !is_table {
            return true;
        }
        let size = header
            .get(48..58)
            .and_then(|field| std::str::from_utf8(field).ok())
            .and_then(|field| field.trim().parse::<usize>().ok());
        let Some(next) = size
            .and_then(|size| at.checked_add(60)?.checked_add(size))
            .map(|end| end.saturating_add(end % 2))
        else {
            return false;
        };
        at = next;
    }
    false
}

/// The files and `-lNAME` words a GNU ld script's `GROUP`, `INPUT` and
/// `AS_NEEDED` commands name, in order, or `None` if `text` is not such a
/// script. `AS_NEEDED` inputs are kept: `ld` links them when they define
/// something wanted, and a library that defines nothing wanted costs a
/// module nothing either.
pub fn linker_script_inputs(text: &str) -> Option<Vec<String>> {
    let text = strip_comments(text);
    let spaced = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " ");
    let mut words = spaced.split_whitespace();
    let mut inputs = Vec::new();
    let mut is_script = false;
    while let Some(word) = words.next() {
        if word != "GROUP" && word != "INPUT" {
            continue;
        }
        if words.next() != Some("(") {
            return None;
        }
        is_script = true;
        let mut depth = 1usize;
        for word in words.by_ref() {
            match word {
                "(" => depth = depth.saturating_add(1),
                ")" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                "AS_NEEDED" => {}
                _ => inputs.push(word.to_owned()),
            }
        }
    }
    is_script.then_some(inputs)
}

fn strip_comments(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        kept.push_str(rest.get(..start).unwrap_or_default());
        rest = rest
            .get(start + 2..)
            .and_then(|after| after.find("*/").and_then(|end| after.get(end + 2..)))
            .unwrap_or_default();
    }
    kept.push_str(rest);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("modload-libsearch-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    #[test]
    fn reads_glibc_scripts() {
        let libc = "/* GNU ld script\n   Use the shared library.  */\n\
            OUTPUT_FORMAT(elf64-x86-64)\n\
            GROUP ( /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a  \
            AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n";
        assert_eq!(
            linker_script_inputs(libc),
            Some(vec![
                String::from("/lib/x86_64-linux-gnu/libc.so.6"),
                String::from("/usr/lib/x86_64-linux-gnu/libc_nonshared.a"),
                String::from("/lib64/ld-linux-x86-64.so.2"),
            ])
        );
        let libm = "GROUP ( /x/libm.so.6  AS_NEEDED ( /x/libmvec.so.1 ) /y/z.so ) INPUT(-lfoo)";
        assert_eq!(
            linker_script_inputs(libm),
            Some(vec![
                String::from("/x/libm.so.6"),
                String::from("/x/libmvec.so.1"),
                String::from("/y/z.so"),
                String::from("-lfoo"),
            ])
        );
        assert_eq!(linker_script_inputs("\x7fELF\x02\x01"), None);
        assert_eq!(linker_script_inputs("/* unterminated"), None);
        assert_eq!(linker_script_inputs("GROUP libc.so"), None);
    }

    #[test]
    fn finds_shared_before_static_in_each_directory_and_follows_scripts() {
        let dir = scratch("order");
        let first = dir.join("first");
        let second = dir.join("second");
        fs::create_dir_all(&first).expect("first");
        fs::create_dir_all(&second).expect("second");
        // The real libc.so.6 stands in for a shared object.
        let libc = SearchPath::from_toolchain()
            .find_library(":libc.so.6")
            .expect("libc.so.6 on the toolchain's search path");
        fs::write(first.join("libonly.a"), b"!<arch>\n").expect("empty archive");
        fs::write(second.join("libonly.so"), b"INPUT(libreal.so)").expect("script");
        fs::copy(&libc, second.join("libreal.so")).expect("copy libc");
        fs::write(
            first.join("libwrap.so"),
            format!(
                "/* a script */ GROUP ( -lonly AS_NEEDED ( {} ) )",
                libc.display()
            ),
        )
        .expect("script");
        let search = SearchPath::from_dirs([first.clone(), second.clone(), first.clone()]);
        assert_eq!(search.dirs().len(), 2);
        // `first` has only the (empty) archive, and is searched first.
        assert_eq!(search.find_library("only"), Some(first.join("libonly.a")));
        assert_eq!(search.resolve_library("only"), Ok(Vec::new()));
        assert_eq!(
            search.resolve_library(":libonly.so"),
            Ok(vec![LinkInput::Shared(second.join("libreal.so"))])
        );
        assert_eq!(
            search.resolve_library("wrap"),
            Ok(vec![LinkInput::Shared(libc.clone())])
        );
        let missing = search.resolve_library("nothere").expect_err("missing");
        assert!(missing.contains("libnothere.so"), "{missing}");
        fs::write(first.join("libloop.so"), b"INPUT(-lloop)").expect("loop");
        let looped = search.resolve_library("loop").expect_err("loop");
        assert!(looped.contains("nested"), "{looped}");
        fs::write(first.join("libjunk.so"), b"junk").expect("junk");
        let junk = search.resolve_library("junk").expect_err("junk");
        assert!(junk.contains("neither"), "{junk}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn tells_empty_archives_from_real_ones() {
        assert!(!archive_has_members(b"!<arch>\n"));
        let symbol_table =
            b"!<arch>\n/               0           0     0     0       4         `\n\0\0\0\0";
        assert!(!archive_has_members(symbol_table));
        let mut with_member = symbol_table.to_vec();
        with_member
            .extend_from_slice(b"a.o/            0           0     0     644     2         `\nxx");
        assert!(archive_has_members(&with_member));
    }

    /// Each supported machine's libraries are looked for in its own
    /// multiarch directories, and another machine's shared objects are
    /// passed over.
    #[test]
    fn searches_each_machines_multiarch_directories() {
        for (arch, tuple, machine) in [
            ("x86_64", "x86_64-linux-gnu", 62u16),
            ("aarch64", "aarch64-linux-gnu", 183),
            ("riscv64", "riscv64-linux-gnu", 243),
        ] {
            assert_eq!(
                (multiarch_tuple(arch).as_str(), elf_machine_of(arch)),
                (tuple, Some(machine))
            );
            let dirs = system_library_dirs(&multiarch_tuple(arch));
            for dir in [format!("/lib/{tuple}"), format!("/usr/lib/{tuple}")] {
                assert!(dirs.contains(&PathBuf::from(&dir)), "{arch}: {dirs:?}");
            }
            assert!(
                !dirs.iter().any(|dir| {
                    let dir = dir.to_string_lossy();
                    MACHINES.iter().any(|(other, _)| {
                        let other = multiarch_tuple(other);
                        other != tuple && dir.contains(&other)
                    })
                }),
                "{arch}: {dirs:?}"
            );
        }
        assert_eq!(elf_machine_of("sparc64"), None);
        let here = host_multiarch_dir();
        assert!(here.starts_with(std::env::consts::ARCH), "{here}");

        let dir = scratch("machines");
        let elf_for = |machine: u16| {
            let mut header = b"\x7fELF\x02\x01\x01".to_vec();
            header.resize(18, 0);
            header.extend_from_slice(&machine.to_le_bytes());
            header.resize(64, 0);
            header
        };
        let aarch64 = dir.join("libaarch64.so");
        fs::write(&aarch64, elf_for(183)).unwrap();
        let script = dir.join("libscript.so");
        fs::write(&script, "GROUP ( libaarch64.so )").unwrap();
        assert!(is_for_machine(&aarch64, Some(183)));
        assert!(!is_for_machine(&aarch64, Some(62)));
        assert!(!is_for_machine(&aarch64, Some(243)));
        assert!(is_for_machine(&aarch64, None));
        assert!(is_for_machine(&script, Some(62)));
        // On this host: found only if this host is an AArch64.
        let found = SearchPath::from_dirs([dir.clone()]).find_library("aarch64");
        assert_eq!(found.is_some(), cfg!(target_arch = "aarch64"), "{found:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn finds_what_gxx_links() {
        let search = SearchPath::from_toolchain();
        for name in ["stdc++", "m", "c", "pthread"] {
            let inputs = search.resolve_library(name);
            assert!(inputs.is_ok(), "-l{name}: {inputs:?}");
        }
        let Ok(stdcxx) = search.resolve_library("stdc++") else {
            unreachable!()
        };
        assert!(
            matches!(stdcxx.as_slice(), [LinkInput::Shared(path)]
                if path.to_string_lossy().contains("libstdc++.so")),
            "{stdcxx:?}"
        );
    }
}
