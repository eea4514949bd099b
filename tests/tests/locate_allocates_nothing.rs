//! `Namespace::locate` and `try_locate` allocate nothing, so a fault
//! handler may call them: counted by a global allocator that tallies every
//! allocation this test's thread makes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use modload_tests::{compile_c, fixture, CModel};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// count is a thread-local `Cell`, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn locating_allocates_nothing() {
    let env = Env::anywhere();
    let first = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let second = env.load(&compile_c(&fixture("m2.c"), CModel::Pic, &[]));
    let addresses: Vec<_> = first
        .symbols()
        .into_iter()
        .chain(second.symbols())
        .map(|symbol| symbol.address)
        .collect();
    let before = allocations();
    let mut found = 0;
    for address in &addresses {
        let name_length = env.namespace.locate(*address, |location| {
            location.and_then(|l| l.symbol).map(|s| s.name.len())
        });
        let again = env
            .namespace
            .try_locate(*address, |location| location.is_some());
        found += usize::from(name_length.is_some() && again == Some(true));
    }
    let after = allocations();
    assert_eq!(found, addresses.len(), "every symbol found");
    assert_eq!(after - before, 0, "allocations while locating");
    // The counter does count: a load allocates.
    let third = env.load(&compile_c(&fixture("m3.c"), CModel::Pic, &[]));
    assert!(allocations() > after);
    unload(third);
    unload(second);
    unload(first);
}
