//! Planning: any object that parses gives a plan that keeps its promises, or
//! a typed error. The same holds for a module set of the input with itself
//! (every global defined twice, its COMDAT groups duplicated) and for a set
//! of the input's two halves, each parsed as an object of its own. Nothing
//! is allocated, so the region must not change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modload::Object;

fuzz_target!(|data: &[u8]| {
    let host = modload_fuzz::host();
    let loader = host.loader();
    let plan = |object: Object<'_>| {
        if let Ok(planned) = loader.plan(object) {
            modload_fuzz::check_plan(planned.plan());
        }
    };
    if let Ok(object) = loader.parse("fuzz.o", data) {
        plan(object);
    }
    if let Ok(set) = loader.parse_set("twice", &[("a.o", data), ("b.o", data)]) {
        plan(set);
    }
    let (first, second) = data.split_at(data.len() / 2);
    if let Ok(set) = loader.parse_set("halves", &[("a.o", first), ("b.o", second)]) {
        plan(set);
    }
    host.check_unchanged();
});
