//! Planning: any object that parses gives a plan that keeps its promises, or
//! a typed error. Nothing is allocated, so the region must not change.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let host = modload_fuzz::host();
    let loader = host.loader();
    if let Ok(object) = loader.parse("fuzz.o", data) {
        if let Ok(planned) = loader.plan(object) {
            modload_fuzz::check_plan(planned.plan());
        }
    }
    host.check_unchanged();
});
