//! Parsing: any bytes give an `Object` or a typed error, never a panic. The
//! signature check, which runs on the same untrusted bytes, is fuzzed here too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modload::{Limits, Object};

fuzz_target!(|data: &[u8]| {
    let host = modload_fuzz::host();
    let _ = modload::signature::verify(data, &host.keys);
    if let Ok(object) = Object::parse("fuzz.o", data) {
        let _ = (object.name(), object.machine());
    }
    // Tight limits take other paths: refusals before and during parsing.
    let tight = Limits::DEFAULT
        .max_sections(12)
        .max_symbols(24)
        .max_relocations(16)
        .max_symbol_name_length(12);
    let _ = Object::parse_with_limits("fuzz.o", data, &tight);
});
