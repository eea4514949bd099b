//! A full load into a host region: parse, plan, allocate, relocate (names the
//! namespace lacks come from a fallback resolver), finalize with real page
//! protection, publish and unload, once with a reservation of its own, once
//! grouped (a reservation per segment, among pages of the same permissions),
//! once packed into shared pages, and once with late binding and unwind
//! tables and no fallback. No input code runs. After every input
//! both regions are back to their baselines and the module loaded before
//! still works.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let host = modload_fuzz::host();
    // Every input goes through all three placements: a reservation of its
    // own, grouped, and packed into pages shared by permission class.
    load_and_unload(host.loader(), data, true);
    host.check_unchanged();
    host.check_base();
    load_and_unload(host.loader().grouped(), data, false);
    host.check_unchanged();
    host.check_grouped_unchanged();
    host.check_base();
    load_and_unload(host.packed_loader(), data, false);
    host.check_packed_unchanged();
    host.check_unchanged();
    host.check_base();
    // Late binding: what nothing defines may wait; it leaves with the module.
    load_and_unload(host.late_loader(), data, true);
    assert!(host.namespace.pending_imports().is_empty());
    host.check_unchanged();
    host.check_base();
});

/// Loads `data` as far as it goes and unloads it. `whole_pages`: the
/// reservation is the plan's size (grouped or packed it is the sum of the
/// segments' pages or pieces instead, which the checks after the unload
/// account for).
fn load_and_unload(loader: modload::Loader<'static>, data: &[u8], whole_pages: bool) {
    let Ok(object) = loader.parse("fuzz.o", data) else {
        return;
    };
    let Ok(planned) = loader.plan(object) else {
        return;
    };
    let plan = planned.plan().clone();
    modload_fuzz::check_plan(&plan);
    let Ok(placed) = planned.allocate() else {
        return;
    };
    let Ok(relocated) = placed.relocate() else {
        return;
    };
    let report = relocated.report();
    if whole_pages {
        assert_eq!(report.reserved, plan.size());
    }
    assert_eq!(report.got_slots_used, plan.got_slots());
    assert!(report.stubs_used <= plan.stub_slots());
    assert_eq!(report.relocations_applied, plan.relocation_total());
    if let Ok(finalized) = relocated.finalize() {
        if let Ok(module) = finalized.publish() {
            // Whatever the symbol table says, each listed symbol is found
            // at its own address, in this module, and the debug object of
            // the module's own bytes is built.
            let namespace = loader.namespace();
            for symbol in module.symbols() {
                let found = namespace.locate(symbol.address, |found| {
                    found.map(|location| location.module == module.id())
                });
                assert_eq!(found, Some(true), "{} not found at its address", symbol.name);
            }
            if let Err(error) = module.debug_object(data) {
                panic!("debug object refused: {error}");
            }
            // Nothing can depend on it, so unloading must work.
            let address = module.symbols().first().map(|symbol| symbol.address);
            assert!(module.unload().is_ok(), "unload refused");
            if let Some(address) = address {
                assert_eq!(namespace.locate(address, |found| found.is_some()), false);
            }
        }
    }
}
