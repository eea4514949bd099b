//! Page permissions for an x86-64 kernel, on its own 4 KiB page tables through
//! the `x86_64` crate. Read-only is a clear `WRITABLE` (effective in ring 0
//! with `CR0.WP`), no-execute is `NO_EXECUTE` (with `EFER.NXE`).

use modload::{MemoryProtection, Permissions, ProtectionError, VirtAddr};
use spin::Mutex;
use x86_64::structures::paging::mapper::{FlagUpdateError, MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTableFlags, PhysFrame, Size2MiB, Size4KiB,
    Translate,
};

/// Why a permission change was refused, as [`ProtectionError::code`].
pub mod codes {
    /// A page of the range is not mapped.
    pub const NOT_MAPPED: i32 = 1;
    /// A page of the range is part of a huge page, which cannot change alone.
    pub const HUGE_PAGE: i32 = 2;
    /// Writable and executable at once was asked for.
    pub const WRITE_AND_EXECUTE: i32 = 3;
    /// No page tables were installed yet.
    pub const NO_TABLES: i32 = 4;
    /// The range is not page-aligned or wraps around.
    pub const BAD_RANGE: i32 = 5;
    /// A page of the range is part of a 1 GiB page, or the frame allocator
    /// ran out while splitting a 2 MiB page.
    pub const CANNOT_SPLIT: i32 = 6;
}

/// Maps every 2 MiB page that `[start, start + len)` touches with 512 pages
/// of 4 KiB instead: the same frames, the same flags. Boot code usually maps
/// memory with 2 MiB pages, but the loader sets permissions per 4 KiB page,
/// which [`PageProtection`] refuses inside a huge page
/// ([`codes::HUGE_PAGE`]). Call it on the module region before handing the
/// tables to [`PageProtection::install`]. Pages already 4 KiB stay as they
/// are; `frames` gives one zeroed frame for each new page table. On an
/// error after a 2 MiB page was unmapped (the allocator ran out), that page
/// is left partly mapped: give it enough frames, one per 2 MiB page.
///
/// # Safety
/// Between unmapping a 2 MiB page and mapping its 4 KiB pages, nothing in it
/// can be reached: none of the 2 MiB pages the range touches may hold the
/// running code, its stack, the page tables or anything an interrupt handler
/// touches. (A region of its own, 2 MiB-aligned in the linker script, is
/// safe.) `tables` must be the active tables.
pub unsafe fn split_huge_pages(
    tables: &mut OffsetPageTable<'_>,
    start: u64,
    len: u64,
    frames: &mut impl FrameAllocator<Size4KiB>,
) -> Result<(), ProtectionError> {
    let cannot = ProtectionError {
        code: codes::CANNOT_SPLIT,
    };
    for page in pages(start, len)? {
        let (huge, flags) = match tables.translate(page.start_address()) {
            TranslateResult::Mapped {
                frame: MappedFrame::Size4KiB(_),
                ..
            } => continue,
            TranslateResult::Mapped {
                frame: MappedFrame::Size2MiB(frame),
                flags,
                ..
            } => (frame, flags),
            TranslateResult::Mapped { .. } => return Err(cannot),
            TranslateResult::NotMapped | TranslateResult::InvalidFrameAddress(_) => {
                return Err(ProtectionError {
                    code: codes::NOT_MAPPED,
                })
            }
        };
        let huge_page: Page<Size2MiB> = Page::containing_address(page.start_address());
        let small_flags = flags & !PageTableFlags::HUGE_PAGE;
        // The new table's entry must allow what any of its pages may later
        // be given (write, execute); each page's own flags restrict it.
        let table_flags = PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | (flags & PageTableFlags::USER_ACCESSIBLE);
        tables.unmap(huge_page).map_err(|_| cannot)?.1.flush();
        let first: Page<Size4KiB> = Page::containing_address(huge_page.start_address());
        let first_frame = PhysFrame::<Size4KiB>::containing_address(huge.start_address());
        for index in 0..512 {
            // SAFETY: the same frames as the 2 MiB page mapped, with its
            // flags: nothing that was reachable changes meaning, and the
            // caller guarantees nothing reaches these pages meanwhile.
            unsafe {
                tables.map_to_with_table_flags(
                    first + index,
                    first_frame + index,
                    small_flags,
                    table_flags,
                    frames,
                )
            }
            .map_err(|_| cannot)?
            .flush();
        }
    }
    Ok(())
}

/// The page-table flags for `permissions`: always present, writable only with
/// `WRITE`, and `NO_EXECUTE` unless `EXECUTE`. Writable and executable at once
/// is refused.
pub fn flags_for(permissions: Permissions) -> Result<PageTableFlags, ProtectionError> {
    if permissions.is_writable_and_executable() {
        return Err(ProtectionError {
            code: codes::WRITE_AND_EXECUTE,
        });
    }
    let mut flags = PageTableFlags::PRESENT;
    if permissions.contains(Permissions::WRITE) {
        flags |= PageTableFlags::WRITABLE;
    }
    if !permissions.contains(Permissions::EXECUTE) {
        flags |= PageTableFlags::NO_EXECUTE;
    }
    Ok(flags)
}

/// The 4 KiB pages of `[start, start + len)`.
pub fn pages(
    start: u64,
    len: u64,
) -> Result<impl Iterator<Item = Page<Size4KiB>>, ProtectionError> {
    let bad = ProtectionError {
        code: codes::BAD_RANGE,
    };
    if (start | len) & 0xfff != 0 {
        return Err(bad);
    }
    let end = start.checked_add(len).ok_or(bad)?;
    let first = x86_64::VirtAddr::try_new(start).map_err(|_| bad)?;
    let count = (end - start) / 4096;
    let first: Page<Size4KiB> = Page::containing_address(first);
    Ok((0..count).map(move |index| first + index))
}

/// The kernel's page tables behind a lock, as the loader's protection backend.
pub struct PageProtection {
    tables: Mutex<Option<OffsetPageTable<'static>>>,
}

impl PageProtection {
    /// A backend with no tables yet: every change is refused until
    /// [`PageProtection::install`].
    pub const fn new() -> Self {
        Self {
            tables: Mutex::new(None),
        }
    }

    /// Hands the active page tables to the backend.
    pub fn install(&self, tables: OffsetPageTable<'static>) {
        *self.tables.lock() = Some(tables);
    }

    /// Runs `work` on the page tables, if installed (for mapping changes the
    /// kernel makes itself, such as aliases).
    pub fn with_tables<R>(
        &self,
        work: impl FnOnce(&mut OffsetPageTable<'static>) -> R,
    ) -> Option<R> {
        self.tables.lock().as_mut().map(work)
    }
}

impl Default for PageProtection {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryProtection for PageProtection {
    fn protect(
        &self,
        start: VirtAddr,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), ProtectionError> {
        let flags = flags_for(permissions)?;
        let pages = pages(start.as_u64(), len)?;
        let mut tables = self.tables.lock();
        let tables = tables.as_mut().ok_or(ProtectionError {
            code: codes::NO_TABLES,
        })?;
        for page in pages {
            // SAFETY: only the permission bits of a mapped 4 KiB page change;
            // the frame stays the same. The loader asks only for pages of its
            // own reservation, which no Rust reference of the kernel spans while
            // it is being protected.
            let flush =
                unsafe { tables.update_flags(page, flags) }.map_err(|error| ProtectionError {
                    code: match error {
                        FlagUpdateError::PageNotMapped => codes::NOT_MAPPED,
                        FlagUpdateError::ParentEntryHugePage => codes::HUGE_PAGE,
                    },
                })?;
            // The stale TLB entry for exactly this page goes (`invlpg`).
            flush.flush();
        }
        Ok(())
    }

    fn sync_instruction_cache(&self, _start: VirtAddr, _len: u64) {
        // x86-64 keeps instruction fetch coherent with stores.
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn permissions_map_to_flags() {
        let code = flags_for(Permissions::CODE).unwrap();
        assert!(!code.contains(PageTableFlags::WRITABLE));
        assert!(!code.contains(PageTableFlags::NO_EXECUTE));
        let read_only = flags_for(Permissions::READ_ONLY).unwrap();
        assert!(!read_only.contains(PageTableFlags::WRITABLE));
        assert!(read_only.contains(PageTableFlags::NO_EXECUTE));
        let data = flags_for(Permissions::READ_WRITE).unwrap();
        assert!(data.contains(PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE));
        assert_eq!(
            flags_for(Permissions::all()).unwrap_err().code,
            codes::WRITE_AND_EXECUTE
        );
    }

    #[test]
    fn ranges_split_into_pages() {
        let pages: Vec<u64> = pages(0x20_0000, 0x3000)
            .unwrap()
            .map(|page| page.start_address().as_u64())
            .collect();
        assert_eq!(pages, [0x20_0000, 0x20_1000, 0x20_2000]);
        assert!(pages_err(0x20_0001, 0x1000));
        assert!(pages_err(0x20_0000, 0x800));
        assert!(pages_err(!0xfff, 0x2000));
    }

    fn pages_err(start: u64, len: u64) -> bool {
        pages(start, len).is_err()
    }

    #[test]
    fn nothing_changes_without_tables() {
        let backend = PageProtection::new();
        let refused = backend.protect(VirtAddr::new(0x1000), 0x1000, Permissions::READ_ONLY);
        assert_eq!(refused.unwrap_err().code, codes::NO_TABLES);
    }
}
