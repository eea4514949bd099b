//! Regressions from review: objects that are legal ELF but easy to mishandle.

mod common;

use common::*;
use modload::{ErrorKind, NoProtection, Object, RelocationProblem};
use modload_tests::{assemble, fixture};

/// A bss too large to place must be refused, never left unplaced with its
/// symbols at address 0.
#[test]
fn a_section_that_cannot_be_placed_is_an_error() {
    let mut bytes = modload_tests::read(&assemble(&fixture("huge_bss.s")));
    let bss = section_header(&bytes, section_index(&bytes, ".bss"));
    bytes[bss + 32..bss + 40].copy_from_slice(&u64::MAX.to_le_bytes());
    let env = Env::anywhere();
    let error = env
        .loader()
        .plan(Object::parse("huge.o", &bytes).unwrap())
        .err()
        .expect("must be refused");
    assert!(
        matches!(error.kind, ErrorKind::ModuleTooLarge { .. }),
        "{error}"
    );
    env.assert_back_to_baseline();
}

/// An absolute symbol may be anywhere: its GOT load keeps the slot.
#[test]
fn got_loads_of_absolute_symbols_are_not_relaxed() {
    let mut bytes = modload_tests::read(&assemble(&fixture("abs_got.s")));
    let entry = symbol_entry(&bytes, "abs_value");
    bytes[entry + 6..entry + 8].copy_from_slice(&0xfff1u16.to_le_bytes()); // st_shndx = SHN_ABS
    bytes[entry + 8..entry + 16].copy_from_slice(&0x1234_5678u64.to_le_bytes()); // st_value
    let env = Env::anywhere();
    let planned = env
        .loader()
        .plan(Object::parse("abs_got.o", &bytes).unwrap())
        .unwrap();
    assert_eq!(planned.plan().got_slots(), 1);
    // SAFETY: the fixture is this project's test code.
    let module = unsafe {
        planned
            .allocate()
            .unwrap()
            .relocate()
            .unwrap()
            .finalize()
            .unwrap()
            .start()
    }
    .unwrap();
    assert_eq!(call0(&module, "abs_got_load"), 0x1234_5678);
    unload(module);
    env.assert_back_to_baseline();
}

/// A COMMON symbol is tentative: a real definition loaded later is accepted.
#[test]
fn a_real_definition_may_follow_a_common_one() {
    let env = Env::anywhere();
    let common = env.load(&assemble(&fixture("common_first.s")));
    let strong = env.load(&assemble(&fixture("strong_after_common.s")));
    assert_eq!(call0(&common, "common_first_read"), 0);
    unload(strong);
    unload(common);
    env.assert_back_to_baseline();
}

/// Planning decided to relax a GOT load; an earlier relocation then rewrote the
/// instruction. Relocation obeys the plan and names the conflict.
#[test]
fn overlapping_relocations_are_reported_as_such() {
    let env = Env::anywhere();
    let bytes = modload_tests::read(&assemble(&fixture("overlapping_fixups.s")));
    let loader = modload::Loader::new(env.namespace, env.region, &NoProtection);
    let planned = loader
        .plan(Object::parse("overlap.o", &bytes).unwrap())
        .unwrap();
    assert_eq!(planned.plan().got_slots(), 0, "relaxed while planning");
    let error = planned
        .allocate()
        .unwrap()
        .relocate()
        .err()
        .expect("the relocations overlap");
    let ErrorKind::Relocation(failure) = error.kind else {
        panic!("{error}")
    };
    assert_eq!(failure.problem, RelocationProblem::InstructionChanged);
    assert_eq!(failure.r_type.name(), Some("R_X86_64_REX_GOTPCRELX"));
    env.assert_back_to_baseline();
}
