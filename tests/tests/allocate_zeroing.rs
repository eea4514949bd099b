//! `Planned::allocate` zeroes only the bytes the section copies do not write
//! (a performance fix, see docs/PERFORMANCE.md). This checks that no stale
//! byte of earlier use survives anywhere else: padding, bss and `COMMON`.

use modload::{Loader, Namespace, NoProtection, Object, Region, SectionKind, VirtAddr};
use modload_tests::{compile_c, fixture, read, CModel};

#[test]
fn bytes_outside_section_contents_start_zeroed_in_dirty_memory() {
    // Region memory full of a stale pattern, as after an earlier module.
    let pages = 64;
    let memory: &'static mut [u8] = vec![0xaau8; (pages + 1) * 4096].leak();
    let offset = memory.as_ptr().align_offset(4096);
    let start = memory.as_mut_ptr().wrapping_add(offset);
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    // SAFETY: the leaked buffer lives forever and only this region uses it.
    unsafe { region.init(start, pages * 4096) }.expect("region");

    let namespace = Namespace::new();
    // Any address in reach will do: nothing runs.
    let host = region.start();
    namespace
        .add_host_export("host_add", host)
        .expect("host export");
    let loader = Loader::new(&namespace, region, &NoProtection);
    let bytes = read(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let object = Object::parse("m1", &bytes).expect("parse");
    let placed = loader
        .plan(object)
        .expect("plan")
        .allocate()
        .expect("allocate");
    let base = placed.load_address();
    let pieces = placed.pieces();
    assert!(
        pieces.iter().any(|piece| piece.kind == SectionKind::Bss),
        "m1 has bss"
    );
    let relocated = placed.relocate().expect("relocate");
    let loaded = relocated.bytes();

    // Bytes that hold section contents or linkage slots; everything else
    // (padding between pieces and segments, bss, COMMON) must be zero.
    let mut written = vec![false; loaded.len()];
    for piece in &pieces {
        let holds_contents = match piece.section {
            Some(_) => piece.kind != SectionKind::Bss,
            None => piece.kind == SectionKind::Got || piece.kind == SectionKind::Stubs,
        };
        if holds_contents {
            let range = piece.offset as usize..(piece.offset + piece.size) as usize;
            written[range].iter_mut().for_each(|flag| *flag = true);
        }
    }
    let stale: Vec<usize> = (0..loaded.len())
        .filter(|&at| !written[at] && loaded[at] != 0)
        .collect();
    assert!(
        stale.is_empty(),
        "{} stale bytes at {:?}… (module at {})",
        stale.len(),
        &stale[..stale.len().min(8)],
        VirtAddr::new(base.as_u64())
    );
}
