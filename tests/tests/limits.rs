//! The loader's configurable [`Limits`]: each bound is exact (an object at the
//! bound loads, one over it is refused by variant, naming the bound and the
//! figure), and a hostile object is refused before the parser allocates for it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use modload::{ErrorKind, Limit, Limits, Object};
use modload_tests::{compile_c, fixture, CModel};

/// Counts the bytes this thread allocates, so a test can see what parsing
/// asked for (tests run on parallel threads; each counts its own).
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is a const-initialised thread-local, which needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|total| total.set(total.get() + layout.size()));
        // SAFETY: forwarded from the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|total| total.set(total.get() + size));
        // SAFETY: forwarded from the caller's contract.
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes this thread allocates while `f` runs.
fn allocated_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = f();
    (result, ALLOCATED.with(Cell::get) - before)
}

fn m2() -> Vec<u8> {
    modload_tests::read(&compile_c(&fixture("m2.c"), CModel::Pic, &[]))
}

/// The object's own figure for each limit.
fn figures(bytes: &[u8], env: &Env) -> Vec<(Limit, u64)> {
    let symbols = raw_symbols(bytes);
    let longest = symbols.iter().map(|s| s.name.len()).max().unwrap() as u64;
    let object = Object::parse("m2.o", bytes).unwrap();
    let size = env.loader().plan(object).unwrap().plan().size();
    vec![
        (Limit::ObjectSize, bytes.len() as u64),
        (Limit::Sections, raw_sections(bytes).len() as u64),
        (Limit::Symbols, symbols.len() as u64),
        (Limit::Relocations, raw_relocations(bytes).len() as u64),
        (Limit::SymbolNameLength, longest),
        (Limit::ModuleSize, size),
    ]
}

fn with(limit: Limit, max: u64) -> Limits {
    let limits = Limits::DEFAULT;
    match limit {
        Limit::ObjectSize => limits.max_object_size(max),
        Limit::Sections => limits.max_sections(max),
        Limit::Symbols => limits.max_symbols(max),
        Limit::Relocations => limits.max_relocations(max),
        Limit::SymbolNameLength => limits.max_symbol_name_length(max),
        Limit::ModuleSize => limits.max_module_size(max),
    }
}

#[test]
fn each_limit_is_exact() {
    let env = Env::anywhere();
    let bytes = m2();
    for (limit, value) in figures(&bytes, &env) {
        assert!(value > 1, "{limit}: {value}");
        // At the bound: parses and plans.
        let loader = env.loader().with_limits(with(limit, value));
        assert_eq!(loader.limits().get(limit), value);
        let object = loader.parse("m2.o", &bytes).unwrap();
        assert!(loader.plan(object).is_ok(), "{limit} at its bound");
        // One under: refused, by parse or (for the module size) by plan.
        let loader = env.loader().with_limits(with(limit, value - 1));
        let expected = ErrorKind::LimitExceeded {
            limit,
            value,
            max: value - 1,
        };
        let error = match loader.parse("m2.o", &bytes) {
            Err(error) => error,
            Ok(object) => {
                assert_eq!(limit, Limit::ModuleSize, "{limit} passed parsing");
                loader.plan(object).err().unwrap()
            }
        };
        assert_eq!(error.kind, expected);
        assert!(error.to_string().contains(&limit.to_string()), "{error}");
        env.assert_back_to_baseline();
    }
}

/// An object parsed with other limits is held to the loader's at planning.
#[test]
fn plan_holds_objects_to_the_loaders_limits() {
    let env = Env::anywhere();
    let bytes = m2();
    for (limit, value) in figures(&bytes, &env) {
        if limit == Limit::ObjectSize {
            continue; // the parsed object no longer has a file size
        }
        let object = Object::parse_with_limits("m2.o", &bytes, &Limits::UNLIMITED).unwrap();
        let loader = env.loader().with_limits(with(limit, value - 1));
        let error = loader.plan(object).err().unwrap();
        assert_eq!(
            error.kind,
            ErrorKind::LimitExceeded {
                limit,
                value,
                max: value - 1
            }
        );
    }
    env.assert_back_to_baseline();
}

/// A valid ELF header and `count` empty section headers: nothing else.
fn many_sections(count: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; 64 + usize::from(count) * 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // ELFCLASS64
    bytes[5] = 1; // ELFDATA2LSB
    bytes[6] = 1; // EV_CURRENT
    put_u16(&mut bytes, 16, 1); // ET_REL
    put_u16(&mut bytes, 18, 62); // EM_X86_64
    put_u32(&mut bytes, 20, 1);
    put_u64(&mut bytes, 40, 64); // e_shoff
    put_u16(&mut bytes, 52, 64); // e_ehsize
    put_u16(&mut bytes, 58, 64); // e_shentsize
    put_u16(&mut bytes, 60, count);
    bytes
}

/// Refused from the header alone: parsing allocates (almost) nothing, where
/// without the bound it reads every header into memory first.
#[test]
fn a_hostile_section_count_is_refused_before_allocating() {
    let bytes = many_sections(16_000);
    let unlimited = Limits::UNLIMITED;
    let (result, unbounded) =
        allocated_by(|| Object::parse_with_limits("many.o", &bytes, &unlimited).map(|_| ()));
    assert_eq!(result, Ok(()), "the file is valid, only large");
    assert!(
        unbounded > 16_000 * 64,
        "parsing allocated only {unbounded} bytes"
    );

    let tight = Limits::DEFAULT.max_sections(100);
    let (result, bounded) =
        allocated_by(|| Object::parse_with_limits("many.o", &bytes, &tight).map(|_| ()));
    assert_eq!(
        result.unwrap_err().kind,
        ErrorKind::LimitExceeded {
            limit: Limit::Sections,
            value: 16_000,
            max: 100
        }
    );
    // The error itself (the module name) is all that is allocated.
    assert!(bounded < 256, "refusing allocated {bounded} bytes");
}

/// The defaults admit every fixture (m1..m3 in all models load in the other
/// suites with them), and are documented figures.
#[test]
fn defaults_are_the_documented_ones() {
    let limits = Limits::default();
    assert_eq!(limits, Limits::DEFAULT);
    assert_eq!(limits.object_size(), 64 << 20);
    assert_eq!(limits.sections(), 16_384);
    assert_eq!(limits.symbols(), 262_144);
    assert_eq!(limits.relocations(), 1 << 20);
    assert_eq!(limits.symbol_name_length(), 4096);
    assert_eq!(limits.module_size(), 256 << 20);
}
