//! What `modload-platform`'s host backend gives a program beyond regions:
//! names from the process for modules, and regions that cost nothing when
//! they are refused.

mod common;

use std::ffi::CString;

use common::Env;
use modload::{ErrorKind, Region};
use modload_platform::host::{map_region, Placement, ProcessSymbols};
use modload_tests::{compile_c, fixture, CModel};

#[test]
fn process_symbols_give_a_stack_protected_module_what_libc_has() {
    let env = Env::anywhere();
    let object = compile_c(
        &fixture("stack_protected.c"),
        CModel::Pic,
        &["-fstack-protector-all"],
    );
    let bytes = modload_tests::read(&object);

    // Without a fallback, the names only libc defines are unresolved.
    // SAFETY: the fixture is this project's own test code.
    let error = unsafe { env.loader().load("stack_protected.o", &bytes) }
        .expect_err("__stack_chk_fail is nowhere in the namespace");
    let ErrorKind::Unresolved { names } = &error.kind else {
        panic!("{error}")
    };
    assert!(
        names.iter().any(|name| &**name == "__stack_chk_fail"),
        "{names:?}"
    );
    env.assert_back_to_baseline();

    // SAFETY: as above.
    let module = unsafe {
        env.loader()
            .with_fallback(&ProcessSymbols)
            .load("stack_protected.o", &bytes)
    }
    .unwrap_or_else(|error| panic!("{error}"));
    let text = CString::new("fourteen bytes").unwrap();
    // SAFETY: `long protected_length(const char *)` in the fixture.
    let length =
        unsafe { module.get::<extern "C" fn(*const std::ffi::c_char) -> i64>("protected_length") }
            .unwrap();
    assert_eq!(length(text.as_ptr()), 14);
    common::unload(module);
    env.assert_back_to_baseline();
}

/// Mappings of exactly `bytes` in this process.
fn mappings_of(bytes: u64) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.split_once('-'))
        .filter(|(start, end)| {
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            end - start == bytes
        })
        .count()
}

#[test]
fn a_region_that_refuses_a_second_mapping_gives_it_back() {
    // An odd size no other test maps.
    const SIZE: usize = (3 << 20) + 7 * 4096;
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    map_region(region, SIZE, Placement::Anywhere).unwrap();
    let mapped = mappings_of(SIZE as u64);
    let error = map_region(region, SIZE, Placement::Anywhere).expect_err("already has memory");
    assert!(error.to_string().contains("already has memory"), "{error}");
    assert_eq!(
        mappings_of(SIZE as u64),
        mapped,
        "the refused mapping is unmapped"
    );
}
