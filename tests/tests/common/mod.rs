//! Shared set-up for the host tests: host exports, fresh regions and
//! namespaces, and typed calls into loaded modules.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::path::Path;

use modload::{LoadError, Loader, Module, Namespace, Region, RegionUsage, VirtAddr};
use modload_platform::host::{new_region, Placement, HOST_PROTECTION};

pub mod placement;

thread_local! {
    // Per thread, because the test harness runs tests in parallel threads and
    // constructors run on the thread that starts the module.
    static LOG: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    static COUNTER: Cell<i64> = const { Cell::new(0) };
}

pub extern "C" fn host_add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

pub extern "C" fn host_mul(a: i64, b: i64) -> i64 {
    a.wrapping_mul(b)
}

pub extern "C" fn host_record(value: i64) {
    LOG.with(|log| log.borrow_mut().push(value));
}

pub extern "C" fn host_counter() -> i64 {
    COUNTER.with(|counter| {
        counter.set(counter.get() + 1);
        counter.get()
    })
}

/// What `host_record` received on this thread, emptying the log.
pub fn take_log() -> Vec<i64> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

pub fn address(function: *const ()) -> VirtAddr {
    VirtAddr::from_ptr(function)
}

/// A region and a namespace of their own, so tests don't see each other.
pub struct Env {
    pub region: &'static Region,
    pub namespace: &'static Namespace,
    pub baseline: RegionUsage,
}

impl Env {
    pub fn new(placement: Placement) -> Self {
        let region = new_region(32 << 20, placement).expect("map a region");
        if let Placement::Near(_) = placement {
            assert!(
                region.start().as_u64() < 0x8000_0000,
                "low region landed at {}",
                region.start()
            );
        }
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        for (name, function) in [
            ("host_add", host_add as *const ()),
            ("host_mul", host_mul as *const ()),
            ("host_record", host_record as *const ()),
            ("host_counter", host_counter as *const ()),
        ] {
            namespace
                .add_host_export(name, address(function))
                .expect("fresh namespace");
        }
        Self {
            region,
            namespace,
            baseline: region.usage(),
        }
    }

    /// A region in the low 2 GiB, for code with 32-bit absolute addresses.
    pub fn low() -> Self {
        Self::new(Placement::Near(0x4000_0000))
    }

    pub fn anywhere() -> Self {
        Self::new(Placement::Anywhere)
    }

    /// Where code built for `model` can run: the low 2 GiB for 32-bit
    /// absolute addresses (`-fno-pic`, small model), else anywhere.
    pub fn for_model(model: modload_tests::CModel) -> Self {
        match model {
            modload_tests::CModel::NoPicSmall => Self::low(),
            _ => Self::anywhere(),
        }
    }

    pub fn loader(&self) -> Loader<'static> {
        Loader::new(self.namespace, self.region, &HOST_PROTECTION)
    }

    pub fn try_load(&self, path: &Path) -> Result<Module<'static>, LoadError> {
        let bytes = modload_tests::read(path);
        // SAFETY: the fixtures are this project's own test code.
        unsafe { self.loader().load(&module_name(path), &bytes) }
    }

    pub fn load(&self, path: &Path) -> Module<'static> {
        self.try_load(path)
            .unwrap_or_else(|error| panic!("load {}: {error}", path.display()))
    }

    pub fn used(&self) -> usize {
        self.region.usage().used
    }

    pub fn assert_back_to_baseline(&self) {
        assert_eq!(
            self.region.usage(),
            self.baseline,
            "region usage did not return to its starting value"
        );
    }
}

/// The fixture's name as a module name: `m1-pic-<hash>.o` loads as `m1.o`.
pub fn module_name(path: &Path) -> String {
    let file = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("?");
    format!("{}.o", file.split('-').next().unwrap_or(file))
}

/// `fn() -> i64` exported by `module`.
pub fn call0(module: &Module<'_>, name: &str) -> i64 {
    // SAFETY: the fixtures declare these functions as `long f(void)`.
    let function = unsafe { module.get::<extern "C" fn() -> i64>(name) }
        .unwrap_or_else(|| panic!("no symbol {name}"));
    function()
}

/// `fn(i64) -> i64` exported by `module`.
pub fn call1(module: &Module<'_>, name: &str, argument: i64) -> i64 {
    // SAFETY: the fixtures declare these functions as `long f(long)`.
    let function = unsafe { module.get::<extern "C" fn(i64) -> i64>(name) }
        .unwrap_or_else(|| panic!("no symbol {name}"));
    function(argument)
}

/// `fn(i64, i64) -> i64` exported by `module`.
pub fn call2(module: &Module<'_>, name: &str, a: i64, b: i64) -> i64 {
    // SAFETY: the fixtures declare these functions as `long f(long, long)` (or int, long).
    let function = unsafe { module.get::<extern "C" fn(i64, i64) -> i64>(name) }
        .unwrap_or_else(|| panic!("no symbol {name}"));
    function(a, b)
}

pub fn unload(module: Module<'_>) {
    if let Err(refused) = module.unload() {
        panic!("unload refused: {}", refused.error);
    }
}

// Raw ELF64 header access, for tests that patch objects into bad shapes.

pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Offset of section header `index`.
pub fn section_header(bytes: &[u8], index: usize) -> usize {
    let shentsize = u16::from_le_bytes(bytes[58..60].try_into().unwrap()) as usize;
    u64_at(bytes, 40) as usize + index * shentsize
}

pub fn section_index(bytes: &[u8], wanted: &str) -> usize {
    let shnum = u16::from_le_bytes(bytes[60..62].try_into().unwrap()) as usize;
    let names = u64_at(
        bytes,
        section_header(
            bytes,
            u16::from_le_bytes(bytes[62..64].try_into().unwrap()) as usize,
        ) + 24,
    ) as usize;
    (0..shnum)
        .find(|index| {
            let name = u32::from_le_bytes(
                bytes[section_header(bytes, *index)..][..4]
                    .try_into()
                    .unwrap(),
            ) as usize;
            bytes[names + name..].starts_with(wanted.as_bytes())
                && bytes[names + name + wanted.len()] == 0
        })
        .unwrap_or_else(|| panic!("no section {wanted}"))
}

/// Offset of the symbol table entry named `wanted`.
pub fn symbol_entry(bytes: &[u8], wanted: &str) -> usize {
    let symtab = section_header(bytes, section_index(bytes, ".symtab"));
    let strtab = section_header(bytes, section_index(bytes, ".strtab"));
    let (start, size) = (
        u64_at(bytes, symtab + 24) as usize,
        u64_at(bytes, symtab + 32) as usize,
    );
    let names = u64_at(bytes, strtab + 24) as usize;
    (start..start + size)
        .step_by(24)
        .find(|entry| {
            let name = u32::from_le_bytes(bytes[*entry..*entry + 4].try_into().unwrap()) as usize;
            bytes[names + name..].starts_with(wanted.as_bytes())
                && bytes[names + name + wanted.len()] == 0
        })
        .unwrap_or_else(|| panic!("no symbol {wanted}"))
}

// A raw view of an ELF64 object's tables, for tests that mutate them field by
// field. It reads the bytes as they are; it trusts them (the tests only
// mutate after reading a good object).

pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

pub fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

pub fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// One section header, read raw. `header` is the header's file offset.
#[derive(Clone, Debug)]
pub struct RawSection {
    pub index: usize,
    pub header: usize,
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub info: u32,
    pub align: u64,
}

/// Offsets of the section header fields.
pub mod sh {
    pub const TYPE: usize = 4;
    pub const FLAGS: usize = 8;
    pub const OFFSET: usize = 24;
    pub const SIZE: usize = 32;
    pub const INFO: usize = 44;
    pub const ADDRALIGN: usize = 48;
    /// Where each field starts, and the header's end.
    pub const BOUNDARIES: [usize; 11] = [0, 4, 8, 16, 24, 32, 40, 44, 48, 56, 64];
}

/// Where each ELF header field starts, and the header's end.
pub const EHDR_BOUNDARIES: [usize; 20] = [
    0, 4, 5, 6, 7, 8, 16, 18, 20, 24, 32, 40, 48, 52, 54, 56, 58, 60, 62, 64,
];

pub fn raw_sections(bytes: &[u8]) -> Vec<RawSection> {
    let count = u16_at(bytes, 60) as usize;
    let names = u64_at(
        bytes,
        section_header(bytes, u16_at(bytes, 62) as usize) + 24,
    ) as usize;
    (0..count)
        .map(|index| {
            let header = section_header(bytes, index);
            let name_at = names + u32_at(bytes, header) as usize;
            let name_len = bytes[name_at..].iter().position(|b| *b == 0).unwrap();
            RawSection {
                index,
                header,
                name: String::from_utf8_lossy(&bytes[name_at..name_at + name_len]).into(),
                sh_type: u32_at(bytes, header + 4),
                flags: u64_at(bytes, header + 8),
                offset: u64_at(bytes, header + 24),
                size: u64_at(bytes, header + 32),
                link: u32_at(bytes, header + 40),
                info: u32_at(bytes, header + 44),
                align: u64_at(bytes, header + 48),
            }
        })
        .collect()
}

/// One symbol table entry, read raw. `entry` is its file offset.
#[derive(Clone, Debug)]
pub struct RawSymbol {
    pub index: usize,
    pub entry: usize,
    pub name: String,
    pub info: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

pub fn raw_symbols(bytes: &[u8]) -> Vec<RawSymbol> {
    let sections = raw_sections(bytes);
    let symtab = sections.iter().find(|s| s.sh_type == 2).unwrap();
    let strtab = &sections[symtab.link as usize];
    (0..symtab.size as usize / 24)
        .map(|index| {
            let entry = symtab.offset as usize + index * 24;
            let name_at = strtab.offset as usize + u32_at(bytes, entry) as usize;
            let name_len = bytes[name_at..].iter().position(|b| *b == 0).unwrap();
            RawSymbol {
                index,
                entry,
                name: String::from_utf8_lossy(&bytes[name_at..name_at + name_len]).into(),
                info: bytes[entry + 4],
                shndx: u16_at(bytes, entry + 6),
                value: u64_at(bytes, entry + 8),
                size: u64_at(bytes, entry + 16),
            }
        })
        .collect()
}

/// One `Rela` entry, read raw: its file offset, the relocation section and
/// the section it patches.
#[derive(Clone, Debug)]
pub struct RawRelocation {
    pub entry: usize,
    pub section: usize,
    pub target: usize,
    pub offset: u64,
    pub symbol: u32,
    pub r_type: u32,
}

pub fn raw_relocations(bytes: &[u8]) -> Vec<RawRelocation> {
    raw_sections(bytes)
        .iter()
        .filter(|s| s.sh_type == 4)
        .flat_map(|s| {
            (0..s.size as usize / 24).map(move |i| {
                let entry = s.offset as usize + i * 24;
                let info = u64_at(bytes, entry + 8);
                RawRelocation {
                    entry,
                    section: s.index,
                    target: s.info as usize,
                    offset: u64_at(bytes, entry),
                    symbol: (info >> 32) as u32,
                    r_type: info as u32,
                }
            })
        })
        .collect()
}

/// The two COMDAT fixtures, as assembly and as C++: `(a, b, symbol prefix)`.
pub fn comdat_pairs() -> [(std::path::PathBuf, std::path::PathBuf, &'static str); 2] {
    use modload_tests::{assemble, compile_cxx, fixture, CModel};
    [
        (
            assemble(&fixture("comdat_a.s")),
            assemble(&fixture("comdat_b.s")),
            "comdat",
        ),
        (
            compile_cxx(&fixture("comdat_a.cpp"), CModel::Pic, &[]),
            compile_cxx(&fixture("comdat_b.cpp"), CModel::Pic, &[]),
            "comdat_cxx",
        ),
    ]
}

/// The models whose code runs in this process (the kernel model needs the
/// top 2 GiB, which user space cannot map).
pub const RUNNABLE: [modload_tests::CModel; 5] = [
    modload_tests::CModel::Pic,
    modload_tests::CModel::PieDefault,
    modload_tests::CModel::NoPicSmall,
    modload_tests::CModel::NoPicLarge,
    modload_tests::CModel::PicLarge,
];
