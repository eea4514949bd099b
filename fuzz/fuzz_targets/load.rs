//! A full load into a host region: parse, plan, allocate, relocate (names the
//! namespace lacks come from a fallback resolver), finalize with real page
//! protection, publish and unload. No input code runs. After every input the
//! region is back to its baseline and the module loaded before still works.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let host = modload_fuzz::host();
    let loader = host.loader();
    let Ok(object) = loader.parse("fuzz.o", data) else {
        return host.check_unchanged();
    };
    if let Ok(planned) = loader.plan(object) {
        let plan = planned.plan().clone();
        modload_fuzz::check_plan(&plan);
        if let Ok(placed) = planned.allocate() {
            if let Ok(relocated) = placed.relocate() {
                let report = relocated.report();
                assert_eq!(report.reserved, plan.size());
                assert_eq!(report.got_slots_used, plan.got_slots());
                assert!(report.stubs_used <= plan.stub_slots());
                assert_eq!(report.relocations_applied, plan.relocation_total());
                if let Ok(finalized) = relocated.finalize() {
                    if let Ok(module) = finalized.publish() {
                        // Nothing can depend on it, so unloading must work.
                        assert!(module.unload().is_ok(), "unload refused");
                    }
                }
            }
        }
    }
    host.check_unchanged();
    host.check_base();
});
