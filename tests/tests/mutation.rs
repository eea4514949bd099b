//! Mutation tests: real fixture objects (x86_64 from gcc and gas, AArch64 from
//! clang) damaged in each way a hostile or corrupt file can be. Every damaged
//! object is taken as far through the load as it goes (parse, plan, allocate,
//! relocate, finalize, publish, unload; none of its code runs) and:
//!
//! - the failure is the typed error the damage calls for, checked by variant
//!   and payload (bit flips, whose effect depends on the bit, are checked
//!   against the field they hit and for the absence of internal errors);
//! - the region's usage is exactly what it was before;
//! - the module loaded before it (`m1`, started for real) still answers.
//!
//! Each test prints how many mutants it tried, per outcome; the figures are
//! quoted in docs/ROBUSTNESS.md (`cargo test --test mutation -- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use modload::{
    ErrorKind, Limit, Limits, LoadError, Module, RegionUsage, RelocationProblem, SectionProblem,
    SectionRef, SymbolProblem, VirtAddr,
};
use modload_tests::{aarch64, assemble, compile_c, fixture, CModel};

const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_RELA: u32 = 4;
const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHT_GROUP: u32 = 17;
const SHF_ALLOC: u64 = 2;
const STT_FILE: u8 = 4;
const SHN_COMMON: u16 = 0xfff2;

/// Every name the namespace lacks resolves to `host_add`: the mutants then
/// get past resolution to relocation, where most of the damage shows.
fn resolve_anything(_name: &str) -> Option<VirtAddr> {
    Some(address(host_add as *const ()))
}
static FALLBACK: fn(&str) -> Option<VirtAddr> = resolve_anything;

/// A region and namespace with `m1` loaded and started: the module that must
/// keep working whatever the mutants do.
struct Bench {
    env: Env,
    base: Module<'static>,
    with_base: RegionUsage,
    tally: BTreeMap<String, usize>,
    tried: usize,
}

impl Bench {
    fn new() -> Self {
        let env = Env::anywhere();
        let base = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
        let with_base = env.region.usage();
        let bench = Self {
            env,
            base,
            with_base,
            tally: BTreeMap::new(),
            tried: 0,
        };
        bench.check_unchanged();
        bench
    }

    /// Loads `bytes` as far as it goes, without running any of its code,
    /// then checks that nothing changed. A module that loads is unloaded.
    fn attempt_with(&mut self, bytes: &[u8], limits: Limits) -> Result<(), ErrorKind> {
        let loader = self
            .env
            .loader()
            .with_fallback(&FALLBACK)
            .with_limits(limits);
        let result = (|| -> Result<(), LoadError> {
            let object = loader.parse("mutant.o", bytes)?;
            let module = loader
                .plan(object)?
                .allocate()?
                .relocate()?
                .finalize()?
                .publish()?;
            if let Err(refused) = module.unload() {
                panic!("a fresh module's unload was refused: {}", refused.error);
            }
            Ok(())
        })();
        self.check_unchanged();
        self.tried += 1;
        let outcome = match &result {
            Ok(()) => "loaded".to_string(),
            Err(error) => variant_name(&error.kind),
        };
        *self.tally.entry(outcome).or_default() += 1;
        result.map_err(|error| {
            assert_eq!(&*error.module, "mutant.o");
            assert!(
                !matches!(error.kind, ErrorKind::PlanMismatch { .. }),
                "an internal check failed: {error}"
            );
            error.kind
        })
    }

    fn attempt(&mut self, bytes: &[u8]) -> Result<(), ErrorKind> {
        self.attempt_with(bytes, Limits::DEFAULT)
    }

    /// The mutant must fail with exactly `expected`.
    fn expect(&mut self, bytes: &[u8], expected: ErrorKind, what: &str) {
        match self.attempt(bytes) {
            Err(kind) => assert_eq!(kind, expected, "{what}"),
            Ok(()) => panic!("{what}: loaded, expected {expected:?}"),
        }
    }

    fn check_unchanged(&self) {
        assert_eq!(
            self.env.region.usage(),
            self.with_base,
            "region usage changed"
        );
        assert_eq!(self.env.namespace.modules().len(), 1, "a mutant stayed");
        assert_eq!(call1(&self.base, "m1_square", 9), 81);
        assert_eq!(call0(&self.base, "m1_value"), 42);
    }

    fn report(&self, class: &str) {
        eprintln!("{class}: {} mutants: {:?}", self.tried, self.tally);
    }
}

/// The variant's name, for the tallies.
fn variant_name(kind: &ErrorKind) -> String {
    let debug = format!("{kind:?}");
    let name = debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("?");
    match kind {
        ErrorKind::Section { problem, .. } => format!("Section::{problem:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
        ErrorKind::Symbol { problem, .. } => format!("Symbol::{problem:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
        ErrorKind::Relocation(failure) => format!("Relocation::{:?}", failure.problem)
            .split([' ', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
        _ => name.to_string(),
    }
}

/// A damaged-object subject: a name for messages and the object's bytes.
struct Subject {
    name: String,
    bytes: Vec<u8>,
}

fn subject(name: &str, path: PathBuf) -> Subject {
    Subject {
        name: name.into(),
        bytes: modload_tests::read(&path),
    }
}

/// The objects to damage: both machines, with data, relocations against the
/// base module and the host, constructors, and many relocation types. `m1`
/// itself is not among them: its copies would only collide with the base.
fn subjects() -> Vec<Subject> {
    vec![
        subject(
            "x86_64 m2 -fPIC",
            compile_c(&fixture("m2.c"), CModel::Pic, &[]),
        ),
        subject(
            "x86_64 m3 -mcmodel=large",
            compile_c(&fixture("m3.c"), CModel::PicLarge, &[]),
        ),
        subject("x86_64 relocs.s", assemble(&fixture("relocs.s"))),
        subject(
            "aarch64 m2 small",
            aarch64::compile_c(&fixture("m2.c"), aarch64::CModel::SmallStatic),
        ),
        subject(
            "aarch64 m3 small -fPIC",
            aarch64::compile_c(&fixture("m3.c"), aarch64::CModel::SmallPic),
        ),
    ]
}

fn section_ref(sections: &[RawSection], index: usize) -> SectionRef {
    SectionRef {
        index,
        name: sections[index].name.as_str().into(),
    }
}

fn section_error(sections: &[RawSection], index: usize, problem: SectionProblem) -> ErrorKind {
    ErrorKind::Section {
        section: section_ref(sections, index),
        problem,
    }
}

/// Sections whose bytes are read as tables while parsing (the names of
/// sections, the symbol table and its strings, relocations): moving one
/// onto other bytes changes more than where the section is.
fn read_as_table(bytes: &[u8], sections: &[RawSection], index: usize) -> bool {
    let section = &sections[index];
    let strtab = sections
        .iter()
        .find(|s| s.sh_type == SHT_SYMTAB)
        .map(|s| s.link as usize);
    index == u16_at(bytes, 62) as usize
        || Some(index) == strtab
        || matches!(section.sh_type, SHT_SYMTAB | SHT_RELA | SHT_REL)
}

/// The error for section `index` lying outside the file when the section
/// name table is `names_readable` or not: a section's name is read from that
/// table, so with the table out of the file every name prints as "?".
fn out_of_bounds(sections: &[RawSection], index: usize, names_readable: bool) -> ErrorKind {
    let name = if names_readable {
        sections[index].name.as_str()
    } else {
        "?"
    };
    ErrorKind::Section {
        section: SectionRef {
            index,
            name: name.into(),
        },
        problem: SectionProblem::OutOfBounds,
    }
}

/// Whether section `index`'s bytes reach past `len`.
fn is_cut(section: &RawSection, len: u64) -> bool {
    has_file_bytes(section)
        && section
            .offset
            .checked_add(section.size)
            .is_none_or(|end| end > len)
}

/// Whether planning loads the section (so its alignment and size matter).
fn is_loaded(section: &RawSection) -> bool {
    section.flags & SHF_ALLOC != 0
        && !matches!(section.sh_type, SHT_NOTE | SHT_GROUP)
        && section.name != ".eh_frame"
}

fn has_file_bytes(section: &RawSection) -> bool {
    section.index != 0 && section.sh_type != SHT_NOBITS
}

/// Each subject loads undamaged: the mutants' failures are the damage's.
#[test]
fn undamaged_subjects_load() {
    let mut bench = Bench::new();
    for subject in subjects() {
        assert_eq!(bench.attempt(&subject.bytes), Ok(()), "{}", subject.name);
    }
    bench.report("undamaged");
}

#[test]
fn bit_flips_in_every_header_and_table() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let mut ranges = vec![(0usize, 64usize)];
        let table = u64_at(good, 40) as usize;
        ranges.push((table, table + sections.len() * 64));
        // The first entries of each symbol and relocation table: every
        // field of an entry, without the time every entry would take.
        for section in &sections {
            if matches!(section.sh_type, SHT_SYMTAB | SHT_RELA) {
                let start = section.offset as usize;
                let len = (section.size as usize).min(6 * 24);
                ranges.push((start, start + len));
            }
        }
        for (start, end) in ranges {
            for at in start..end {
                for bit in 0..8 {
                    let mut bytes = good.clone();
                    bytes[at] ^= 1 << bit;
                    let what = format!("{}: bit {bit} of byte {at:#x}", subject.name);
                    let result = bench.attempt(&bytes);
                    // The identity fields have exactly one possible answer.
                    let expected = match at {
                        0..4 => Some(ErrorKind::NotElf),
                        4 => Some(ErrorKind::UnsupportedClass { class: bytes[4] }),
                        5 => Some(ErrorKind::UnsupportedEndian { data: bytes[5] }),
                        16 | 17 => Some(ErrorKind::NotRelocatable {
                            e_type: u16_at(&bytes, 16),
                        }),
                        18 | 19 => Some(ErrorKind::UnsupportedMachine {
                            e_machine: u16_at(&bytes, 18),
                        }),
                        _ => None,
                    };
                    if let Some(expected) = expected {
                        assert_eq!(result, Err(expected), "{what}");
                    }
                }
            }
        }
    }
    bench.report("bit flips");
    assert!(bench.tried > 20_000, "only {} flips", bench.tried);
    assert!(
        bench.tally.len() >= 8,
        "too few outcomes: {:?}",
        bench.tally
    );
}

/// Every field boundary of the ELF header and of each section header, and
/// every boundary of section contents, symbols and relocations.
fn header_boundaries(bytes: &[u8]) -> Vec<usize> {
    let sections = raw_sections(bytes);
    let table = u64_at(bytes, 40) as usize;
    let mut cuts: Vec<usize> = EHDR_BOUNDARIES.to_vec();
    for index in 0..sections.len() {
        cuts.extend(
            sh::BOUNDARIES
                .iter()
                .map(|field| table + index * 64 + field),
        );
    }
    for section in sections.iter().filter(|s| has_file_bytes(s)) {
        let (start, end) = (
            section.offset as usize,
            (section.offset + section.size) as usize,
        );
        cuts.extend([start, end]);
        if matches!(section.sh_type, SHT_SYMTAB | SHT_RELA) {
            cuts.extend((start..end).step_by(24));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|cut| *cut < bytes.len());
    cuts
}

/// The section header table moved to just after the ELF header, so cutting
/// the file cuts section contents while every header is still whole.
fn headers_first(bytes: &[u8]) -> Vec<u8> {
    let sections = raw_sections(bytes);
    let table = u64_at(bytes, 40) as usize;
    let table_len = sections.len() * 64;
    assert_eq!(table + table_len, bytes.len(), "the table ends the file");
    let mut moved = bytes[..64].to_vec();
    moved.extend_from_slice(&bytes[table..]);
    moved.extend_from_slice(&bytes[64..table]);
    put_u64(&mut moved, 40, 64);
    for index in 0..sections.len() {
        let header = 64 + index * 64;
        let offset = u64_at(&moved, header + sh::OFFSET);
        if offset >= 64 {
            put_u64(&mut moved, header + sh::OFFSET, offset + table_len as u64);
        }
    }
    moved
}

const MALFORMED: ErrorKind = ErrorKind::Malformed {
    what: "ELF headers or tables",
};

/// What a file cut to `len` bytes must give: cutting only padding after the
/// last section changes nothing.
fn expected_cut(bytes: &[u8], len: usize) -> Result<(), ErrorKind> {
    match len {
        0..4 => return Err(ErrorKind::NotElf),
        4 => return Err(ErrorKind::UnsupportedClass { class: 0 }),
        5 => return Err(ErrorKind::UnsupportedEndian { data: 0 }),
        _ => {}
    }
    let table = u64_at(bytes, 40) as usize;
    let sections = raw_sections(bytes);
    if len < 64 || len < table + sections.len() * 64 {
        return Err(MALFORMED);
    }
    let len = len as u64;
    let names = &sections[u16_at(bytes, 62) as usize];
    match sections.iter().find(|s| is_cut(s, len)) {
        Some(cut) => Err(out_of_bounds(&sections, cut.index, !is_cut(names, len))),
        None => Ok(()),
    }
}

#[test]
fn truncation_at_every_header_boundary() {
    let mut bench = Bench::new();
    for subject in subjects() {
        for (layout, bytes) in [
            ("as built", subject.bytes.clone()),
            ("headers first", headers_first(&subject.bytes)),
        ] {
            assert_eq!(bench.attempt(&bytes), Ok(()), "{} {layout}", subject.name);
            for len in header_boundaries(&bytes) {
                let what = format!("{} {layout}: cut to {len} bytes", subject.name);
                assert_eq!(
                    bench.attempt(&bytes[..len]),
                    expected_cut(&bytes, len),
                    "{what}"
                );
            }
        }
    }
    bench.report("truncation");
    assert!(bench.tried > 1000, "only {} cuts", bench.tried);
}

#[test]
fn section_offsets_and_sizes_past_the_end() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let len = good.len() as u64;
        for section in sections.iter().filter(|s| has_file_bytes(s)) {
            let header = section.header;
            for (field, value) in [
                (sh::OFFSET, len + 1),
                (sh::OFFSET, u64::MAX),
                (sh::SIZE, len - section.offset + 1),
                (sh::SIZE, u64::MAX / 2),
            ] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, header + field, value);
                let what = format!(
                    "{}: {} field {field} = {value:#x}",
                    subject.name, section.name
                );
                let entries = if field == sh::SIZE { value / 24 } else { 0 };
                let names_readable = section.index != u16_at(good, 62) as usize;
                let expected = match section.sh_type {
                    SHT_SYMTAB if entries > Limits::DEFAULT.symbols() => ErrorKind::LimitExceeded {
                        limit: Limit::Symbols,
                        value: entries,
                        max: Limits::DEFAULT.symbols(),
                    },
                    SHT_RELA if entries > Limits::DEFAULT.relocations() => {
                        let others: u64 = sections
                            .iter()
                            .filter(|s| s.sh_type == SHT_RELA && s.index != section.index)
                            .map(|s| s.size / 24)
                            .sum();
                        ErrorKind::LimitExceeded {
                            limit: Limit::Relocations,
                            value: entries + others,
                            max: Limits::DEFAULT.relocations(),
                        }
                    }
                    _ => out_of_bounds(&sections, section.index, names_readable),
                };
                bench.expect(&bytes, expected, &what);
            }
        }
    }
    bench.report("offsets and sizes past the end");
}

#[test]
fn alignments_that_are_not_powers_of_two_or_too_large() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        for section in &sections {
            for align in [3u64, 5, 6, 12, 24, 100, 0x8000_0001, u64::MAX] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, section.header + sh::ADDRALIGN, align);
                let what = format!("{}: {} aligned {align:#x}", subject.name, section.name);
                let expected = section_error(
                    &sections,
                    section.index,
                    SectionProblem::BadAlignment { align },
                );
                bench.expect(&bytes, expected, &what);
            }
            for align in [1u64 << 17, 1 << 40, 1 << 63] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, section.header + sh::ADDRALIGN, align);
                let what = format!("{}: {} aligned {align:#x}", subject.name, section.name);
                if is_loaded(section) {
                    let expected = section_error(
                        &sections,
                        section.index,
                        SectionProblem::BadAlignment { align },
                    );
                    bench.expect(&bytes, expected, &what);
                } else {
                    // Not loaded, so its alignment asks nothing of the region.
                    assert_eq!(bench.attempt(&bytes), Ok(()), "{what}");
                }
            }
        }
    }
    bench.report("alignment");
}

#[test]
fn symbol_and_section_indices_out_of_range() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let symbols = raw_symbols(good);
        let count = sections.len() as u16;
        let defined = symbols.iter().filter(|s| {
            s.index != 0 && s.info & 0xf != STT_FILE && s.shndx != 0 && s.shndx < 0xff00
        });
        for symbol in defined {
            for shndx in [count, count + 1, 0xfeff, 0xff00, 0xff1f, 0xfff0, 0xffff] {
                let mut bytes = good.clone();
                put_u16(&mut bytes, symbol.entry + 6, shndx);
                let problem = if shndx == 0xffff {
                    SymbolProblem::ExtendedIndex
                } else {
                    SymbolProblem::BadSectionIndex {
                        shndx: u32::from(shndx),
                    }
                };
                let expected = ErrorKind::Symbol {
                    index: symbol.index,
                    name: symbol.name.as_str().into(),
                    problem,
                };
                let what = format!("{}: {} in section {shndx:#x}", subject.name, symbol.name);
                bench.expect(&bytes, expected, &what);
            }
        }
        // A name offset outside the string table.
        let strtab = &sections[sections
            .iter()
            .find(|s| s.sh_type == SHT_SYMTAB)
            .unwrap()
            .link as usize];
        for symbol in symbols.iter().filter(|s| !s.name.is_empty()) {
            let mut bytes = good.clone();
            put_u32(&mut bytes, symbol.entry, strtab.size as u32 + 10);
            let expected = ErrorKind::Symbol {
                index: symbol.index,
                name: "?".into(),
                problem: SymbolProblem::BadName,
            };
            bench.expect(
                &bytes,
                expected,
                &format!("{}: name of {}", subject.name, symbol.name),
            );
        }
        // Relocations against symbols that do not exist.
        for relocation in raw_relocations(good) {
            if !is_loaded(&sections[relocation.target]) {
                continue;
            }
            for symbol in [symbols.len() as u32, symbols.len() as u32 + 7, u32::MAX] {
                let mut bytes = good.clone();
                put_u32(&mut bytes, relocation.entry + 12, symbol);
                let what = format!(
                    "{}: relocation at {:#x} of {} against symbol {symbol}",
                    subject.name, relocation.offset, sections[relocation.target].name
                );
                match bench.attempt(&bytes) {
                    Err(ErrorKind::Relocation(failure)) => {
                        assert_eq!(failure.problem, RelocationProblem::BadSymbol, "{what}");
                        assert_eq!(failure.offset, relocation.offset, "{what}");
                        assert_eq!(failure.section.index, relocation.target, "{what}");
                        assert_eq!(failure.r_type.raw, relocation.r_type, "{what}");
                    }
                    other => panic!("{what}: {other:?}"),
                }
            }
        }
        // Relocation sections that patch sections that do not exist.
        for section in sections.iter().filter(|s| s.sh_type == SHT_RELA) {
            for info in [0, u32::from(count), u32::MAX] {
                let mut bytes = good.clone();
                put_u32(&mut bytes, section.header + sh::INFO, info);
                let expected = section_error(&sections, section.index, SectionProblem::BadLink);
                let what = format!("{}: {} patches section {info}", subject.name, section.name);
                bench.expect(&bytes, expected, &what);
            }
        }
    }
    bench.report("indices");
}

#[test]
fn relocation_offsets_past_their_section() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        for relocation in raw_relocations(good) {
            let target = &sections[relocation.target];
            if !is_loaded(target) {
                continue;
            }
            // Every field here is at least two bytes, so one byte before the
            // end is already past it. (Far offsets: see the ignored test below.)
            for offset in [target.size - 1, target.size] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, relocation.entry, offset);
                let what = format!(
                    "{}: relocation type {} of {} moved to {offset:#x}",
                    subject.name, relocation.r_type, target.name
                );
                match bench.attempt(&bytes) {
                    Err(ErrorKind::Relocation(failure)) => {
                        assert_eq!(failure.problem, RelocationProblem::OutOfBounds, "{what}");
                        assert_eq!(failure.offset, offset, "{what}");
                        assert_eq!(failure.section, section_ref(&sections, target.index));
                    }
                    other => panic!("{what}: {other:?}"),
                }
            }
        }
    }
    bench.report("relocation offsets");
    assert!(bench.tried > 100);
}

#[test]
fn string_tables_without_a_terminating_nul() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        for table in sections.iter().filter(|s| s.sh_type == SHT_STRTAB) {
            let end = (table.offset + table.size) as usize;
            let mut overwritten = good.clone();
            overwritten[end - 1] = b'A';
            let expected =
                section_error(&sections, table.index, SectionProblem::UnterminatedStrings);
            let what = format!("{}: {} ends in 'A'", subject.name, table.name);
            bench.expect(&overwritten, expected.clone(), &what);
            // One byte shorter: the last name loses its NUL.
            assert_ne!(good[end - 2], 0, "{} ends in two NULs", table.name);
            let mut shortened = good.clone();
            put_u64(&mut shortened, table.header + sh::SIZE, table.size - 1);
            let what = format!("{}: {} one byte short", subject.name, table.name);
            bench.expect(&shortened, expected, &what);
        }
    }
    bench.report("unterminated string tables");
}

#[test]
fn huge_section_counts_and_sizes() {
    let mut bench = Bench::new();
    let max_sections = Limits::DEFAULT.sections();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let mut many = good.clone();
        put_u16(&mut many, 60, 0xffff);
        let expected = ErrorKind::LimitExceeded {
            limit: Limit::Sections,
            value: 0xffff,
            max: max_sections,
        };
        bench.expect(
            &many,
            expected,
            &format!("{}: e_shnum 0xffff", subject.name),
        );
        // Without limits, goblin's own check refuses a header table past the file.
        assert_eq!(
            bench.attempt_with(&many, Limits::UNLIMITED),
            Err(MALFORMED),
            "{}",
            subject.name
        );
        // e_shnum 0: the count is in section 0's sh_size (extended numbering).
        let mut extended = good.clone();
        put_u16(&mut extended, 60, 0);
        put_u64(&mut extended, sections[0].header + sh::SIZE, u64::MAX);
        let expected = ErrorKind::LimitExceeded {
            limit: Limit::Sections,
            value: u64::MAX,
            max: max_sections,
        };
        bench.expect(
            &extended,
            expected,
            &format!("{}: extended count", subject.name),
        );
        // Huge contents, for each loaded section with bytes in the file.
        for section in sections
            .iter()
            .filter(|s| has_file_bytes(s) && is_loaded(s))
        {
            let mut bytes = good.clone();
            put_u64(&mut bytes, section.header + sh::SIZE, u64::MAX);
            let expected = section_error(&sections, section.index, SectionProblem::OutOfBounds);
            bench.expect(
                &bytes,
                expected,
                &format!("{}: huge {}", subject.name, section.name),
            );
        }
    }
    // Huge NOBITS sections pass parsing and are refused by their plan.
    let bss_subjects = [
        subject("x86_64 huge_bss.s", assemble(&fixture("huge_bss.s"))),
        subject(
            "aarch64 m1 small",
            aarch64::compile_c(&fixture("m1.c"), aarch64::CModel::SmallStatic),
        ),
    ];
    for subject in bss_subjects {
        let sections = raw_sections(&subject.bytes);
        let bss = sections.iter().find(|s| s.name == ".bss").unwrap();
        for size in [300u64 << 20, 1 << 40, u64::MAX] {
            let mut bytes = subject.bytes.clone();
            put_u64(&mut bytes, bss.header + sh::SIZE, size);
            let what = format!("{}: .bss of {size:#x}", subject.name);
            match bench.attempt(&bytes) {
                Err(ErrorKind::LimitExceeded {
                    limit: Limit::ModuleSize,
                    value,
                    max,
                }) => {
                    assert!(size < 1 << 31, "{what}");
                    assert!(
                        value > size && max == Limits::DEFAULT.module_size(),
                        "{what}"
                    );
                }
                Err(ErrorKind::ModuleTooLarge { .. }) => assert!(size >= 1 << 31, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
    bench.report("huge counts and sizes");
}

#[test]
fn overlapping_sections() {
    let mut bench = Bench::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let table = u64_at(good, 40);
        let len = good.len() as u64;
        // Move a section nobody parses for us onto another section's bytes.
        let movable = sections.iter().filter(|s| {
            has_file_bytes(s) && s.size > 0 && !read_as_table(good, &sections, s.index)
        });
        for moved in movable {
            for onto in sections.iter().filter(|s| has_file_bytes(s) && s.size > 0) {
                if onto.index == moved.index || onto.offset + moved.size > len {
                    continue;
                }
                let mut bytes = good.clone();
                put_u64(&mut bytes, moved.header + sh::OFFSET, onto.offset);
                let (high, low) = if moved.index > onto.index {
                    (moved.index, onto.index)
                } else {
                    (onto.index, moved.index)
                };
                let expected =
                    section_error(&sections, high, SectionProblem::Overlaps { other: low });
                let what = format!("{}: {} onto {}", subject.name, moved.name, onto.name);
                bench.expect(&bytes, expected, &what);
            }
            // Onto the ELF header and onto the section header table.
            for offset in [0, 8, table] {
                if offset + moved.size > len {
                    continue;
                }
                let mut bytes = good.clone();
                put_u64(&mut bytes, moved.header + sh::OFFSET, offset);
                let expected =
                    section_error(&sections, moved.index, SectionProblem::OverlapsHeaders);
                let what = format!("{}: {} onto headers at {offset}", subject.name, moved.name);
                bench.expect(&bytes, expected, &what);
            }
        }
    }
    bench.report("overlapping sections");
    assert!(bench.tried > 100);
}

/// An AArch64 object with a `COMMON` symbol, written here because the AArch64
/// C fixtures are built with `-fno-common`.
fn aarch64_common() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mutation");
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("common_a64.s");
    std::fs::write(
        &source,
        "\t.comm tentative, 64, 16\n\
         \t.text\n\
         \t.globl read_tentative\n\
         read_tentative:\n\
         \tadrp x0, tentative\n\
         \tldr x0, [x0, :lo12:tentative]\n\
         \tret\n",
    )
    .unwrap();
    aarch64::assemble(&source)
}

#[test]
fn common_symbols_with_absurd_alignment_or_size() {
    let mut bench = Bench::new();
    let subjects = [
        subject(
            "x86_64 common.c",
            compile_c(&fixture("common.c"), CModel::Pic, &["-fcommon"]),
        ),
        subject("aarch64 .comm", aarch64_common()),
    ];
    for subject in subjects {
        let good = &subject.bytes;
        assert_eq!(bench.attempt(good), Ok(()), "{}", subject.name);
        let commons: Vec<RawSymbol> = raw_symbols(good)
            .into_iter()
            .filter(|s| s.shndx == SHN_COMMON)
            .collect();
        assert!(!commons.is_empty(), "{} has no COMMON symbol", subject.name);
        for symbol in &commons {
            // A COMMON symbol's st_value is its alignment.
            for align in [3u64, 6, 24, 1 << 17, 1 << 32, 1 << 63, u64::MAX] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, symbol.entry + 8, align);
                let expected = ErrorKind::Symbol {
                    index: symbol.index,
                    name: symbol.name.as_str().into(),
                    problem: SymbolProblem::BadCommonAlignment { align },
                };
                let what = format!("{}: {} aligned {align:#x}", subject.name, symbol.name);
                bench.expect(&bytes, expected, &what);
            }
            for size in [1u64 << 40, u64::MAX] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, symbol.entry + 16, size);
                let what = format!("{}: {} of {size:#x} bytes", subject.name, symbol.name);
                match bench.attempt(&bytes) {
                    Err(ErrorKind::ModuleTooLarge { .. }) => {}
                    other => panic!("{what}: {other:?}"),
                }
            }
        }
    }
    bench.report("COMMON");
}

/// A relocation field far past the end of its section must be reported as
/// out of bounds. PC-relative types report an overflow instead: the value is
/// computed (and found not to fit) before the field's place is checked.
/// Offsets just past the end are reported correctly (the test above).
#[test]
fn far_relocation_offsets_are_out_of_bounds_not_overflows() {
    let mut bench = Bench::new();
    let mut wrong = Vec::new();
    for subject in subjects() {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        for relocation in raw_relocations(good) {
            let target = &sections[relocation.target];
            if !is_loaded(target) {
                continue;
            }
            for offset in [1u64 << 40, u64::MAX - 1] {
                let mut bytes = good.clone();
                put_u64(&mut bytes, relocation.entry, offset);
                match bench.attempt(&bytes) {
                    Err(ErrorKind::Relocation(failure))
                        if failure.problem == RelocationProblem::OutOfBounds => {}
                    other => wrong.push(format!(
                        "{}: type {} of {} at {offset:#x}: {other:?}",
                        subject.name, relocation.r_type, target.name
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `sh_entsize` of the symbol table, relocation tables and groups must be
/// their entry size: a table read at another stride than its writer meant
/// would give other symbols or relocations. One symbol table only: a
/// second one would be a second answer to which symbols the file has.
#[test]
fn table_entry_sizes_and_a_single_symbol_table() {
    const SH_ENTSIZE: usize = 56;
    let mut bench = Bench::new();
    let mut all = subjects();
    all.push(subject(
        "x86_64 comdat_a.s",
        assemble(&fixture("comdat_a.s")),
    ));
    for subject in all {
        let good = &subject.bytes;
        let sections = raw_sections(good);
        let tables = sections
            .iter()
            .filter(|s| matches!(s.sh_type, SHT_SYMTAB | SHT_RELA | SHT_GROUP));
        for table in tables {
            for entsize in [0u64, 1, 4, 8, 16, 23, 25, 48, u64::MAX] {
                let right = if table.sh_type == SHT_GROUP { 4 } else { 24 };
                if entsize == right {
                    continue;
                }
                let mut bytes = good.clone();
                put_u64(&mut bytes, table.header + SH_ENTSIZE, entsize);
                let what = format!("{}: {} entsize {entsize}", subject.name, table.name);
                bench.expect(
                    &bytes,
                    section_error(
                        &sections,
                        table.index,
                        SectionProblem::BadEntrySize { entsize },
                    ),
                    &what,
                );
            }
        }
        // An empty second symbol table, in place of the stack note.
        let Some(note) = sections.iter().find(|s| s.name == ".note.GNU-stack") else {
            continue;
        };
        let mut bytes = good.clone();
        put_u32(&mut bytes, note.header + sh::TYPE, SHT_SYMTAB);
        put_u64(&mut bytes, note.header + SH_ENTSIZE, 24);
        bench.expect(
            &bytes,
            ErrorKind::Malformed {
                what: "more than one symbol table",
            },
            &format!("{}: two symbol tables", subject.name),
        );
    }
    bench.report("entry sizes");
}
