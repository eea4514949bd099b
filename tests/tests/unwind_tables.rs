//! `Loader::keep_unwind_tables`: `.eh_frame` loaded, zero-terminated and
//! relocated, so a host unwinder can be given each module's frames; entries
//! for COMDAT code another module owns are emptied, not left pointing at it.

mod common;

use common::*;
use modload::{Loader, Module};
use modload_tests::{compile_cxx, fixture, CModel};

/// One FDE as an unwinder reads it (gcc's x86-64 encoding: pc-relative
/// signed 32-bit `pc_begin`, then a 32-bit `pc_range`).
#[derive(Debug)]
struct Fde {
    pc_begin: u64,
    pc_range: u32,
}

/// Walks the table at `table` up to its zero terminator, as libgcc's
/// `__register_frame` does, and returns the FDEs.
fn read_table(table: u64) -> Vec<Fde> {
    let word = |at: u64| {
        // SAFETY: the table is the module's loaded `.eh_frame`, read-only
        // and mapped for as long as the module is loaded; the walk stops at
        // its terminator.
        unsafe { (at as *const u32).read_unaligned() }
    };
    let mut fdes = Vec::new();
    let mut at = table;
    loop {
        let length = word(at);
        if length == 0 {
            return fdes;
        }
        if word(at + 4) != 0 {
            let field = at + 8;
            let offset = word(field) as i32;
            fdes.push(Fde {
                pc_begin: field.wrapping_add_signed(offset.into()),
                pc_range: word(field + 4),
            });
        }
        at += 4 + u64::from(length);
    }
}

fn load(loader: Loader<'static>, source: &str) -> (Module<'static>, Vec<u64>) {
    let path = compile_cxx(
        &fixture(source),
        CModel::Pic,
        &["-fasynchronous-unwind-tables"],
    );
    let bytes = modload_tests::read(&path);
    let object = loader.parse(&module_name(&path), &bytes).unwrap();
    let finalized = loader
        .plan(object)
        .and_then(|planned| planned.allocate())
        .and_then(|placed| placed.relocate())
        .and_then(|relocated| relocated.finalize())
        .unwrap();
    let tables: Vec<u64> = finalized
        .unwind_tables()
        .iter()
        .map(|t| t.as_u64())
        .collect();
    // SAFETY: the fixture is this project's own test code.
    let module = unsafe { finalized.start() }.unwrap();
    assert_eq!(
        module
            .unwind_tables()
            .iter()
            .map(|t| t.as_u64())
            .collect::<Vec<_>>(),
        tables
    );
    (module, tables)
}

#[test]
fn tables_are_kept_terminated_and_point_at_the_modules_code() {
    let env = Env::anywhere();
    let loader = env.loader().keep_unwind_tables();
    let (a, a_tables) = load(loader, "comdat_a.cpp");
    let (b, b_tables) = load(loader, "comdat_b.cpp");
    assert_eq!((a_tables.len(), b_tables.len()), (1, 1));

    let shared = a.symbol("_Z13cxx_shared_fnl").unwrap().as_u64();
    let a_fdes = read_table(a_tables[0]);
    // A owns the COMDAT copy of cxx_shared_fn: one FDE covers it.
    assert!(
        a_fdes
            .iter()
            .any(|fde| fde.pc_begin == shared && fde.pc_range > 0),
        "{a_fdes:x?}"
    );
    let a_call = a.symbol("comdat_cxx_a_call").unwrap().as_u64();
    assert!(a_fdes
        .iter()
        .any(|fde| fde.pc_begin == a_call && fde.pc_range > 0));

    // B's copy of that group was not loaded: its FDE is emptied, and no FDE
    // of B claims any of A's code.
    let b_fdes = read_table(b_tables[0]);
    let b_call = b.symbol("comdat_cxx_b_call").unwrap().as_u64();
    assert!(b_fdes
        .iter()
        .any(|fde| fde.pc_begin == b_call && fde.pc_range > 0));
    assert!(b_fdes.iter().any(|fde| fde.pc_range == 0), "{b_fdes:x?}");
    for fde in &b_fdes {
        let covers = |address: u64| {
            fde.pc_begin <= address && address < fde.pc_begin + u64::from(fde.pc_range)
        };
        assert!(
            !covers(shared) && !covers(a_call),
            "{fde:x?} claims A's code"
        );
    }
    assert_eq!(b_fdes.len(), a_fdes.len(), "every FDE is still there");

    unload(b);
    unload(a);
    env.assert_back_to_baseline();
}

#[test]
fn without_the_option_nothing_is_kept() {
    let env = Env::anywhere();
    let (a, tables) = load(env.loader(), "comdat_a.cpp");
    assert!(tables.is_empty());
    let path = compile_cxx(
        &fixture("comdat_a.cpp"),
        CModel::Pic,
        &["-fasynchronous-unwind-tables"],
    );
    let bytes = modload_tests::read(&path);
    let kept = env.loader().keep_unwind_tables();
    let with = kept.plan(kept.parse("a.o", &bytes).unwrap()).unwrap();
    let without = env
        .loader()
        .plan(env.loader().parse("a.o", &bytes).unwrap())
        .unwrap();
    let read_only = |planned: &modload::Planned<'_, '_>| {
        planned.plan().kind(modload::SectionKind::ReadOnly).size
    };
    assert!(read_only(&with) > read_only(&without) + 4);
    drop((with, without));
    unload(a);
    env.assert_back_to_baseline();
}
