//! `Planned::allocate` zeroes only the bytes the section copies do not write
//! (a performance fix, see docs/PERFORMANCE.md). This checks that no stale
//! byte of earlier use survives anywhere else: padding, bss and `COMMON`, in
//! one block by default and in each segment's pages when grouped.

use modload::{Loader, Namespace, NoProtection, Object, Region, SectionKind, Segment};
use modload_tests::{compile_c, fixture, read, CModel};

/// A region over memory full of a stale pattern, as after an earlier module.
fn dirty_region(pages: usize) -> &'static Region {
    let memory: &'static mut [u8] = vec![0xaau8; (pages + 1) * 4096].leak();
    let offset = memory.as_ptr().align_offset(4096);
    let start = memory.as_mut_ptr().wrapping_add(offset);
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    // SAFETY: the leaked buffer lives forever and only this region uses it.
    unsafe { region.init(start, pages * 4096) }.expect("region");
    region
}

/// Loads `m1` up to relocation and returns the stale bytes (nonzero, and
/// neither section contents nor linkage slots) of each segment, as layout
/// offsets.
fn stale_bytes(grouped: bool) -> Vec<(Segment, usize)> {
    let region = dirty_region(64);
    let namespace = Namespace::new();
    // Any address in reach will do: nothing runs.
    namespace
        .add_host_export("host_add", region.start())
        .expect("host export");
    let mut loader = Loader::new(&namespace, region, &NoProtection);
    if grouped {
        loader = loader.grouped();
    }
    let bytes = read(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let object = Object::parse("m1", &bytes).expect("parse");
    let placed = loader
        .plan(object)
        .expect("plan")
        .allocate()
        .expect("allocate");
    let pieces = placed.pieces();
    assert!(
        pieces.iter().any(|piece| piece.kind == SectionKind::Bss),
        "m1 has bss"
    );
    let relocated = placed.relocate().expect("relocate");
    assert_eq!(relocated.bytes().is_empty(), grouped);

    let written = |at: u64| {
        pieces.iter().any(|piece| {
            let holds_contents = match piece.section {
                Some(_) => piece.kind != SectionKind::Bss,
                None => piece.kind == SectionKind::Got || piece.kind == SectionKind::Stubs,
            };
            holds_contents && (piece.offset..piece.offset + piece.size).contains(&at)
        })
    };
    let mut stale = Vec::new();
    let mut checked = 0;
    for segment in Segment::ALL {
        let start = relocated.plan().segment(segment).offset;
        let bytes = relocated.segment_bytes(segment);
        checked += bytes.len();
        for (at, byte) in bytes.iter().enumerate() {
            if *byte != 0 && !written(start + at as u64) {
                stale.push((segment, start as usize + at));
            }
        }
    }
    // Every page of the module was looked at.
    assert!(checked as u64 >= relocated.report().reserved, "{checked}");
    stale
}

#[test]
fn bytes_outside_section_contents_start_zeroed_in_dirty_memory() {
    let stale = stale_bytes(false);
    assert!(
        stale.is_empty(),
        "{} stale bytes: {:?}…",
        stale.len(),
        &stale[..stale.len().min(8)]
    );
}

#[test]
fn grouped_segments_start_zeroed_in_dirty_memory() {
    let stale = stale_bytes(true);
    assert!(
        stale.is_empty(),
        "{} stale bytes: {:?}…",
        stale.len(),
        &stale[..stale.len().min(8)]
    );
}
