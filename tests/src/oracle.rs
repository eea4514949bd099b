//! A differential oracle for `modload link`: the same objects are linked by
//! modload and by `ld.lld-22` at the same addresses, and the two outputs are
//! compared.
//!
//! 1. `modload link objects --at ADDR -o DIR --sym ...` lays the modules out
//!    and writes their images and `layout.json`.
//! 2. Copies of the objects get a unique name for every section, so that a
//!    generated linker script can put each loaded section exactly where
//!    modload put it; lld links them in the same order (so COMDAT groups
//!    resolve the same way) with relaxation and string merging off, the
//!    `--sym` definitions as `--defsym`, and its own GOT and PLT far away.
//! 3. Every byte that no GOT, PLT or stub relocation touches must be equal;
//!    every such relocation must lead to the same final address, through a
//!    GOT slot, a stub, a veneer or a thunk. Nothing here uses the loader's
//!    relocation code: the decoders in this module are written from the
//!    psABI and the instruction set manuals.
//!
//! When modload refuses a link (a value out of range), lld must refuse too:
//! [`Case::laid_out_with`] gives symbol values that do link, so the layout is
//! known and lld can be asked about the same addresses.

mod aarch64;
mod build;
mod compare;
mod edges;
mod isa;
mod json;
mod layout;
mod lld;
mod object;
mod x86_64;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub use build::{assemble_llvm_mc, compile_c_clang, generated_source, many_relocations_source};
pub use compare::{Comparison, Mismatch};
pub use edges::{place_of, EdgeType, Edges, Origin};
pub use isa::{Arch, Linkage};
pub use json::{Json, JsonError};
pub use layout::{parse_hex, Area, Layout, LinkedModule};
pub use lld::{LldImage, OutputSection};
pub use object::{rename_sections, retype_relocations, InputObject, InputRelocation, InputSection};

/// The decoders, public so tests can check a single instruction or stub.
pub mod decode {
    pub use super::aarch64::{
        adrp_offset, branch_offset, literal_offset, thunk_target, unsigned_offset, veneer_target,
    };
    pub use super::x86_64::stub_target;
}

/// Section types whose sections are structure, not content: never renamed.
/// (`SHT_NULL`, `SHT_SYMTAB`, `SHT_STRTAB`, `SHT_RELA`, `SHT_REL`,
/// `SHT_GROUP`, `SHT_SYMTAB_SHNDX`, and LLVM's own such as `SHT_LLVM_ADDRSIG`.)
fn is_structure(sh_type: u32) -> bool {
    matches!(sh_type, 0 | 2 | 3 | 4 | 9 | 17 | 18) || (0x6fff_4c00..=0x6fff_4cff).contains(&sh_type)
}

/// Prefix of renamed sections modload did not load; the script discards them.
const DISCARDED_PREFIX: &str = ".mlx";

/// One set of objects to link both ways.
#[derive(Clone, Debug)]
pub struct Case {
    /// Names the work directory and the reports.
    pub name: String,
    /// The objects, in load order.
    pub objects: Vec<PathBuf>,
    /// `--at`.
    pub at: u64,
    /// `--sym` definitions.
    pub symbols: Vec<(String, u64)>,
    /// Definitions that link, for learning the layout when `symbols` do not.
    pub layout_symbols: Option<Vec<(String, u64)>>,
    /// Where lld's own sections go; by default at the first 64 KiB boundary
    /// after the modules.
    pub synthetic: Option<u64>,
}

impl Case {
    /// A case with no `--sym` definitions.
    pub fn new(name: &str, objects: &[PathBuf], at: u64) -> Case {
        Case {
            name: name.to_owned(),
            objects: objects.to_vec(),
            at,
            symbols: Vec::new(),
            layout_symbols: None,
            synthetic: None,
        }
    }

    /// Adds `--sym name=address`.
    pub fn symbol(mut self, name: &str, address: u64) -> Case {
        self.symbols.push((name.to_owned(), address));
        self
    }

    /// Replaces the `--sym` definition of `name` (or adds one).
    pub fn redefine(mut self, name: &str, address: u64) -> Case {
        match self.symbols.iter_mut().find(|(known, _)| known == name) {
            Some(entry) => entry.1 = address,
            None => self.symbols.push((name.to_owned(), address)),
        }
        self
    }

    /// Adds several `--sym` definitions.
    pub fn symbols<'n>(mut self, symbols: impl IntoIterator<Item = (&'n str, u64)>) -> Case {
        for (name, address) in symbols {
            self.symbols.push((name.to_owned(), address));
        }
        self
    }

    /// When modload refuses this case, learn the layout from a link with
    /// these definitions instead (the layout does not depend on the values).
    pub fn laid_out_with(mut self, symbols: &[(String, u64)]) -> Case {
        self.layout_symbols = Some(symbols.to_vec());
        self
    }

    /// Puts lld's GOT and PLT at `address`.
    pub fn synthetic_at(mut self, address: u64) -> Case {
        self.synthetic = Some(address);
        self
    }
}

/// How the two links went.
#[derive(Debug)]
pub enum Outcome {
    /// Both linked; here is the comparison.
    Compared {
        /// What agreed and what did not.
        comparison: Comparison,
        /// modload's layout.
        layout: Layout,
    },
    /// Both refused.
    BothRefused {
        /// modload's one-line error.
        modload: String,
        /// lld's errors.
        lld: String,
    },
    /// Only modload refused.
    ModloadRefused {
        /// modload's one-line error.
        modload: String,
        /// What lld did, if the layout was known (see [`Case::laid_out_with`]).
        lld: Option<String>,
    },
    /// Only lld refused; modload's link is there to inspect.
    LldRefused {
        /// lld's errors.
        lld: String,
        /// modload's layout.
        layout: Layout,
    },
}

impl Outcome {
    /// One paragraph saying how the links went, for failure messages.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Compared { comparison, .. } => format!("both linked: {comparison}"),
            Outcome::BothRefused { modload, lld } => {
                format!("both refused.\n  modload: {modload}\n  lld: {lld}")
            }
            Outcome::ModloadRefused { modload, lld } => format!(
                "only modload refused: {modload}\n  lld: {}",
                lld.as_deref()
                    .unwrap_or("not run (no layout; see Case::laid_out_with)")
            ),
            Outcome::LldRefused { lld, .. } => format!("only lld refused: {lld}"),
        }
    }
}

/// A finished case: its outcome and its work directory, which is removed when
/// the run is dropped unless the test is failing (to look at the files).
pub struct Run {
    /// How the links went.
    pub outcome: Outcome,
    /// The case that ran.
    pub case: Case,
    dir: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Run {
    /// The work directory: `modload/` (modload's output), `lld/` (renamed
    /// objects, `link.ld`, `out.elf`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// lld's output, if lld linked.
    pub fn lld_output(&self) -> Option<LldImage> {
        let path = self.dir.join("lld").join("out.elf");
        path.exists().then(|| LldImage::open(&path))
    }

    /// Compares the files in the work directory again, as they are now: for
    /// tests that change an output on purpose to see the oracle notice.
    /// Panics unless both links had succeeded.
    pub fn compare_again(&self) -> Comparison {
        let Outcome::Compared { layout, .. } = &self.outcome else {
            panic!("{}: there are no two links to compare", self.case.name);
        };
        let layout = Layout::read(&layout.dir);
        let objects: Vec<InputObject> = self
            .case
            .objects
            .iter()
            .map(|path| InputObject::parse(&path.display().to_string(), &crate::read(path)))
            .collect();
        let arch = objects
            .first()
            .and_then(|object| Arch::from_machine(object.machine))
            .unwrap_or_else(|| panic!("{}: unknown machine", self.case.name));
        compare_outputs(
            arch,
            &layout,
            &objects,
            &self.dir.join("lld").join("out.elf"),
        )
    }

    /// Panics with a readable report unless both linked and agree.
    pub fn assert_agree(&self) -> (&Comparison, &Layout) {
        match &self.outcome {
            Outcome::Compared { comparison, layout } if comparison.mismatches.is_empty() => {
                assert!(
                    comparison.bytes_compared > 0,
                    "{}: nothing was compared",
                    self.case.name
                );
                (comparison, layout)
            }
            Outcome::Compared { comparison, .. } => panic!(
                "{}: modload and lld disagree (files in {}):\n{comparison}",
                self.case.name,
                self.dir.display()
            ),
            other => panic!(
                "{}: expected both links to succeed, got {} (files in {})",
                self.case.name,
                other.summary(),
                self.dir.display()
            ),
        }
    }

    /// Panics unless both refused; returns both messages.
    pub fn assert_both_refuse(&self) -> (&str, &str) {
        match &self.outcome {
            Outcome::BothRefused { modload, lld } => (modload, lld),
            other => panic!(
                "{}: expected both links to be refused, got {} (files in {})",
                self.case.name,
                other.summary(),
                self.dir.display()
            ),
        }
    }

    /// Panics unless modload linked and lld refused; returns modload's layout
    /// and lld's message.
    pub fn assert_only_lld_refuses(&self) -> (&Layout, &str) {
        match &self.outcome {
            Outcome::LldRefused { layout, lld } => (layout, lld),
            other => panic!(
                "{}: expected only lld to refuse, got {} (files in {})",
                self.case.name,
                other.summary(),
                self.dir.display()
            ),
        }
    }
}

/// Runs `modload link` (the binary at `modload`) and lld on `case`.
pub fn run(modload: &Path, case: &Case) -> Run {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let safe_name: String = case
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = crate::cache_dir().join("oracle").join(format!(
        "{safe_name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut finished = Run {
        outcome: Outcome::ModloadRefused {
            modload: String::new(),
            lld: None,
        },
        case: case.clone(),
        dir: dir.clone(),
    };
    finished.outcome = run_in(modload, case, &dir);
    finished
}

fn run_in(modload: &Path, case: &Case, dir: &Path) -> Outcome {
    let ours = dir.join("modload");
    let modload_result = modload_link(modload, case, &case.symbols, &ours);
    let layout = match &modload_result {
        Ok(()) => Layout::read(&ours),
        Err(message) => {
            let Some(symbols) = &case.layout_symbols else {
                // No layout to copy: ask lld with its own. A refusal that
                // no placement can avoid (a misaligned local target) shows
                // there too.
                return match lld_own_layout(case, dir) {
                    Err(lld) => Outcome::BothRefused {
                        modload: message.clone(),
                        lld,
                    },
                    Ok(()) => Outcome::ModloadRefused {
                        modload: message.clone(),
                        lld: Some(String::from("linked with its own layout")),
                    },
                };
            };
            let learn = dir.join("layout");
            if let Err(error) = modload_link(modload, case, symbols, &learn) {
                panic!("{}: the layout link failed too: {error}", case.name);
            }
            Layout::read(&learn)
        }
    };

    let originals: Vec<(Vec<u8>, InputObject)> = case
        .objects
        .iter()
        .map(|path| {
            let bytes = crate::read(path);
            let object = InputObject::parse(&path.display().to_string(), &bytes);
            (bytes, object)
        })
        .collect();
    let arch = originals
        .first()
        .and_then(|(_, object)| Arch::from_machine(object.machine))
        .unwrap_or_else(|| panic!("{}: no objects, or an unknown machine", case.name));

    let theirs = dir.join("lld");
    std::fs::create_dir_all(&theirs).unwrap_or_else(|e| panic!("{}: {e}", theirs.display()));
    let mut renamed = Vec::new();
    let mut placements = Vec::new();
    for (module, (bytes, object)) in originals.iter().enumerate() {
        let mut names = BTreeMap::new();
        for (index, section) in object.sections.iter().enumerate() {
            if is_structure(section.sh_type) {
                continue;
            }
            match layout.section_area(module, index) {
                Some(area) => {
                    let name = compare::placed_name(module, index);
                    placements.push(lld::Placement {
                        name: name.clone(),
                        address: area.address,
                    });
                    names.insert(index, name);
                }
                None => {
                    names.insert(index, format!("{DISCARDED_PREFIX}{module}_{index}"));
                }
            }
        }
        let path = theirs.join(format!("{module}.o"));
        let mut copy = rename_sections(bytes, &names);
        for &(from, to) in arch.lld_substitutes() {
            object::retype_relocations(&mut copy, from, to);
        }
        std::fs::write(&path, copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        renamed.push(path);
    }
    let end = layout
        .modules
        .iter()
        .map(|module| module.base.saturating_add(module.size))
        .max()
        .unwrap_or(layout.at);
    // Right after the modules: in reach of the tiny model's ±1 MiB GOT loads.
    let synthetic = case
        .synthetic
        .unwrap_or_else(|| end.saturating_add(0xffff) & !0xffff);
    let script = theirs.join("link.ld");
    std::fs::write(
        &script,
        lld::script(&placements, DISCARDED_PREFIX, synthetic),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let output = theirs.join("out.elf");
    let lld_result = lld::link(&renamed, &script, &case.symbols, &output);

    match (modload_result, lld_result) {
        (Ok(()), Ok(())) => {
            let objects: Vec<InputObject> =
                originals.into_iter().map(|(_, object)| object).collect();
            let comparison = compare_outputs(arch, &layout, &objects, &output);
            Outcome::Compared { comparison, layout }
        }
        (Err(modload), Err(lld)) => Outcome::BothRefused { modload, lld },
        (Err(modload), Ok(())) => Outcome::ModloadRefused {
            modload,
            lld: Some(String::from("linked")),
        },
        (Ok(()), Err(lld)) => Outcome::LldRefused { lld, layout },
    }
}

/// Links the case's objects with lld's default layout from `case.at`.
fn lld_own_layout(case: &Case, dir: &Path) -> Result<(), String> {
    let theirs = dir.join("lld-own");
    std::fs::create_dir_all(&theirs).unwrap_or_else(|e| panic!("{}: {e}", theirs.display()));
    let mut objects = Vec::new();
    for (module, path) in case.objects.iter().enumerate() {
        let mut copy = crate::read(path);
        let object = InputObject::parse(&path.display().to_string(), &copy);
        if let Some(arch) = Arch::from_machine(object.machine) {
            for &(from, to) in arch.lld_substitutes() {
                object::retype_relocations(&mut copy, from, to);
            }
        }
        let renamed = theirs.join(format!("{module}.o"));
        std::fs::write(&renamed, copy).unwrap_or_else(|e| panic!("{}: {e}", renamed.display()));
        objects.push(renamed);
    }
    lld::link_default(&objects, case.at, &case.symbols, &theirs.join("out.elf"))
}

fn compare_outputs(arch: Arch, layout: &Layout, objects: &[InputObject], lld: &Path) -> Comparison {
    let image = lld::LldImage::open(lld);
    compare::compare(&compare::Subject {
        arch,
        layout,
        objects,
        lld: &image,
    })
}

/// Runs `modload link`; the error is its stderr.
fn modload_link(
    modload: &Path,
    case: &Case,
    symbols: &[(String, u64)],
    output: &Path,
) -> Result<(), String> {
    let mut command = Command::new(modload);
    command
        .arg("link")
        .args(&case.objects)
        .arg("--at")
        .arg(format!("{:#x}", case.at))
        .arg("-o")
        .arg(output);
    for (name, address) in symbols {
        command.arg("--sym").arg(format!("{name}={address:#x}"));
    }
    let result = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", modload.display()));
    if result.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&result.stderr).trim().to_owned())
    }
}
