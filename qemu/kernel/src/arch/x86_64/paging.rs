//! The kernel's own page tables: everything the kernel uses is identity-mapped
//! with 4 KiB pages and W^X per section, page 0 stays unmapped, and the module
//! region starts read-write and non-executable. The loader then changes module
//! pages through [`PROTECTION`].

use modload::Permissions;
use modload_platform::x86_64::{flags_for, pages, PageProtection};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::PhysAddr;

/// The loader's protection backend over these tables.
pub static PROTECTION: PageProtection = PageProtection::new();

const POOL_FRAMES: usize = 128;

/// Frames for page tables, in `.bss` (identity-mapped, so physical = virtual).
#[repr(C, align(4096))]
struct Pool([[u8; 4096]; POOL_FRAMES]);

static mut POOL: Pool = Pool([[0; 4096]; POOL_FRAMES]);
static NEXT_FRAME: spin::Mutex<usize> = spin::Mutex::new(0);

/// Hands out the pool's frames in order; page tables are never freed here.
struct PoolFrames;

// SAFETY: each frame is returned once, is 4 KiB-aligned, zeroed (.bss), and
// used by nothing but the page tables it is given to.
unsafe impl FrameAllocator<Size4KiB> for PoolFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let mut next = NEXT_FRAME.lock();
        if *next >= POOL_FRAMES {
            return None;
        }
        let frame = (core::ptr::addr_of!(POOL) as u64) + (*next as u64) * 4096;
        *next += 1;
        PhysFrame::from_start_address(PhysAddr::new(frame)).ok()
    }
}

extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
    static __module_region_start: u8;
    static __module_region_end: u8;
    static __kernel_symbols_start: u8;
    static __kernel_symbols_end: u8;
}

fn symbol(at: *const u8) -> u64 {
    at as u64
}

/// Builds the tables and switches to them.
pub fn init() {
    let kernel_start = symbol(core::ptr::addr_of!(__kernel_start));
    let text_end = symbol(core::ptr::addr_of!(__text_end));
    let rodata_end = symbol(core::ptr::addr_of!(__rodata_end));
    let kernel_end = symbol(core::ptr::addr_of!(__kernel_end));
    let region_start = symbol(core::ptr::addr_of!(__module_region_start));
    let region_end = symbol(core::ptr::addr_of!(__module_region_end));
    let symbols_start = symbol(core::ptr::addr_of!(__kernel_symbols_start));
    let symbols_end = symbol(core::ptr::addr_of!(__kernel_symbols_end));

    let mut frames = PoolFrames;
    let Some(root) = frames.allocate_frame() else {
        println!("paging: no frame for the root table");
        super::exit(false);
    };
    let root_pointer = root.start_address().as_u64() as *mut PageTable;
    // SAFETY: the frame is a fresh, zeroed, identity-mapped pool frame that
    // only this table uses, and it lives forever (a static).
    let root_table: &'static mut PageTable = unsafe { &mut *root_pointer };
    // SAFETY: physical memory is identity-mapped (offset 0) by the boot tables
    // now and by these tables once active, for every frame the pool hands out.
    let mut tables = unsafe { OffsetPageTable::new(root_table, x86_64::VirtAddr::new(0)) };

    let text = Permissions::CODE;
    let ranges = [
        // Low memory below the kernel, but not page 0: null pointers fault.
        (0x1000, kernel_start, Permissions::READ_WRITE),
        (kernel_start, text_end, text),
        (text_end, rodata_end, Permissions::READ_ONLY),
        (rodata_end, kernel_end, Permissions::READ_WRITE),
        (region_start, region_end, Permissions::READ_WRITE),
        // The kernel's symbol table, after the module region.
        (symbols_start, symbols_end, Permissions::READ_ONLY),
    ];
    for (start, end, permissions) in ranges {
        if let Err(why) = map_identity(&mut tables, &mut frames, start, end, permissions) {
            println!("paging: mapping {start:#x}..{end:#x} failed: {why}");
            super::exit(false);
        }
    }
    // SAFETY: the new tables map the running code, stack, data and every frame
    // they use exactly as the boot tables did (identity), so execution continues.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    PROTECTION.install(tables);
}

fn map_identity(
    tables: &mut OffsetPageTable<'static>,
    frames: &mut PoolFrames,
    start: u64,
    end: u64,
    permissions: Permissions,
) -> Result<(), &'static str> {
    let start = start & !0xfff;
    let end = (end + 0xfff) & !0xfff;
    let flags = flags_for(permissions).map_err(|_| "writable and executable")?;
    for page in pages(start, end - start).map_err(|_| "bad range")? {
        let frame = PhysFrame::containing_address(PhysAddr::new(page.start_address().as_u64()));
        // SAFETY: identity mappings of memory the kernel owns (its image, its
        // bss and the module region) alias nothing else.
        unsafe { tables.map_to(page, frame, flags, frames) }
            .map_err(|_| "map_to failed")?
            .ignore();
    }
    Ok(())
}

/// Maps `[alias, alias + len)` to the physical pages behind
/// `[existing, existing + len)`, with `permissions`.
pub fn map_alias(
    alias: u64,
    existing: u64,
    len: u64,
    permissions: Permissions,
) -> Result<(), &'static str> {
    let flags = flags_for(permissions).map_err(|_| "writable and executable")?;
    let targets = pages(alias, len).map_err(|_| "alias range not page-aligned")?;
    let sources = pages(existing, len).map_err(|_| "source range not page-aligned")?;
    PROTECTION
        .with_tables(|tables| {
            for (target, source) in targets.zip(sources) {
                let frame = tables
                    .translate_page(source)
                    .map_err(|_| "source page not mapped")?;
                // SAFETY: the alias window holds no other mapping, and the
                // frame is module memory the scenario controls for the alias's
                // whole life.
                unsafe {
                    tables.map_to_with_table_flags(
                        target,
                        frame,
                        flags,
                        PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
                        &mut PoolFrames,
                    )
                }
                .map_err(|_| "alias page already mapped")?
                .flush();
            }
            Ok(())
        })
        .unwrap_or(Err("no page tables"))
}

/// Removes an alias made by [`map_alias`].
pub fn unmap_alias(alias: u64, len: u64) {
    let Ok(targets) = pages(alias, len) else {
        return;
    };
    PROTECTION.with_tables(|tables| {
        for page in targets {
            if let Ok((_, flush)) = tables.unmap(page) {
                flush.flush();
            }
        }
    });
}
