//! The page tables themselves: a pool of table frames, walked and changed
//! only through [`PageTables`], which checks a whole request before it
//! changes anything.

use super::*;

/// One page of one translation: what [`PageTables::translate`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The physical address of the page (page-aligned).
    pub physical: u64,
    /// What EL1 may do there (empty: mapped, but every access faults).
    pub permissions: Permissions,
    /// The memory type.
    pub attributes: MemoryAttributes,
}

/// One 4 KiB frame of the table pool: 512 descriptors.
///
/// Descriptors are atomics so that each update is one single-copy-atomic
/// 64-bit store, as the table walker, which reads them concurrently, requires,
/// and so that no store is elided or torn by the compiler.
#[repr(C, align(4096))]
pub struct TableFrame([AtomicU64; ENTRIES]);

impl TableFrame {
    /// An empty table (every descriptor invalid), for `static` pools.
    pub const fn new() -> Self {
        TableFrame([const { AtomicU64::new(0) }; ENTRIES])
    }

    pub(super) fn entry(&self, index: u64) -> &AtomicU64 {
        // The index is always masked to 9 bits by the callers; `min` keeps this
        // total without a panic path.
        let index = (index as usize).min(ENTRIES - 1);
        &self.0[index]
    }
}

impl Default for TableFrame {
    fn default() -> Self {
        Self::new()
    }
}

/// Index of `va` in its level-`level` table (levels 1, 2 and 3).
fn table_index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (3 - level))) & (ENTRIES as u64 - 1)
}

/// A page-aligned, non-wrapping range inside the virtual address space.
fn check_range(va: u64, len: u64) -> Result<u64, MapError> {
    if !is_page_aligned(va) || !is_page_aligned(len) {
        return Err(MapError::Misaligned);
    }
    let end = va.checked_add(len).ok_or(MapError::OutOfRange)?;
    if end > VIRTUAL_LIMIT {
        return Err(MapError::OutOfRange);
    }
    Ok(end)
}

/// Each page-aligned address of `[start, end)`.
pub(super) fn pages(start: u64, end: u64) -> impl Iterator<Item = u64> {
    (start..end).step_by(PAGE_SIZE as usize)
}

/// The translation tables of one EL1 regime (TTBR0_EL1, 39-bit VA).
///
/// Every method checks the whole request before changing anything, so an
/// error leaves the tables as they were. Methods that weaken or remove
/// translations invalidate the TLB entries of each page they changed.
pub struct PageTables {
    /// The frames; frame 0 is the level-1 table.
    pub(super) pool: &'static [TableFrame],
    /// Frames handed out so far.
    pub(super) used: usize,
    /// The address of frame 0 (virtual = physical).
    pub(super) base: u64,
}

impl core::fmt::Debug for PageTables {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageTables")
            .field("root", &format_args!("{:#x}", self.base))
            .field("tables_used", &self.used)
            .field("tables_free", &self.free_tables())
            .finish()
    }
}

impl PageTables {
    /// Takes a pool of frames for good and makes an empty regime in it.
    ///
    /// The pool must be identity-mapped once the MMU is on (or reached with
    /// the MMU off): descriptors hold a table's address as its physical address.
    pub fn new(pool: &'static mut [TableFrame]) -> Result<Self, MapError> {
        let base = pool.as_ptr() as u64;
        let size = (pool.len() as u64)
            .checked_mul(PAGE_SIZE)
            .ok_or(MapError::BadPool)?;
        if pool.is_empty()
            || base
                .checked_add(size)
                .is_none_or(|end| end > PHYSICAL_LIMIT)
        {
            return Err(MapError::BadPool);
        }
        // A reused pool may hold stale descriptors.
        for frame in pool.iter() {
            for entry in &frame.0 {
                entry.store(0, Ordering::Relaxed);
            }
        }
        Ok(PageTables {
            pool,
            used: 1,
            base,
        })
    }

    /// The physical address of the level-1 table, for `TTBR0_EL1`.
    pub fn root_address(&self) -> u64 {
        self.base
    }

    /// Frames still free in the pool.
    pub fn free_tables(&self) -> usize {
        self.pool.len() - self.used
    }

    pub(super) fn root(&self) -> &'static TableFrame {
        // `new` refused an empty pool.
        &self.pool[0]
    }

    /// The table a level-1 or level-2 descriptor points to, `None` if the
    /// descriptor is invalid.
    fn next_table(&self, entry: &AtomicU64) -> Result<Option<&'static TableFrame>, MapError> {
        let descriptor = Descriptor::from_bits_retain(entry.load(Ordering::Relaxed));
        if !descriptor.contains(Descriptor::VALID) {
            return Ok(None);
        }
        if !descriptor.contains(Descriptor::TABLE_OR_PAGE) {
            return Err(MapError::Foreign);
        }
        let offset = (descriptor & Descriptor::ADDRESS)
            .bits()
            .checked_sub(self.base)
            .ok_or(MapError::Foreign)?;
        let index = usize::try_from(offset / PAGE_SIZE).map_err(|_| MapError::Foreign)?;
        if index == 0 || index >= self.used {
            return Err(MapError::Foreign);
        }
        let pool: &'static [TableFrame] = self.pool;
        pool.get(index).map(Some).ok_or(MapError::Foreign)
    }

    /// The level-3 descriptor for `va`, `None` if no level-3 table covers it.
    pub(super) fn leaf(&self, va: u64) -> Result<Option<&'static AtomicU64>, MapError> {
        let Some(level2) = self.next_table(self.root().entry(table_index(va, 1)))? else {
            return Ok(None);
        };
        let Some(level3) = self.next_table(level2.entry(table_index(va, 2)))? else {
            return Ok(None);
        };
        Ok(Some(level3.entry(table_index(va, 3))))
    }

    /// The level-3 descriptor of a mapped page.
    fn mapped_leaf(&self, va: u64) -> Result<(&'static AtomicU64, Descriptor), MapError> {
        let entry = self.leaf(va)?.ok_or(MapError::NotMapped)?;
        let descriptor = Descriptor::from_bits_retain(entry.load(Ordering::Relaxed));
        if !is_page(descriptor) {
            return Err(MapError::NotMapped);
        }
        Ok((entry, descriptor))
    }

    /// The next-level table under `entry`, taking a frame if there is none.
    fn table_or_new(&mut self, entry: &AtomicU64) -> Result<&'static TableFrame, MapError> {
        if let Some(table) = self.next_table(entry)? {
            return Ok(table);
        }
        let pool: &'static [TableFrame] = self.pool;
        let table = pool.get(self.used).ok_or(MapError::OutOfTables)?;
        let address = self.base + self.used as u64 * PAGE_SIZE;
        self.used += 1;
        // The frame was zeroed in `new` and never handed out; it must read as
        // empty before the walker can reach it, which the store order and the
        // barrier after `map` ensure.
        entry.store(
            (Descriptor::VALID | Descriptor::TABLE_OR_PAGE).bits() | address,
            Ordering::Release,
        );
        Ok(table)
    }

    /// How many new tables mapping `[start, end)` takes.
    pub(super) fn tables_needed(&self, start: u64, end: u64) -> Result<usize, MapError> {
        let mut needed = 0;
        let mut gigabyte = start & !(LEVEL1_SPAN - 1);
        while gigabyte < end {
            let first = gigabyte.max(start) & !(LEVEL2_SPAN - 1);
            let last = gigabyte.saturating_add(LEVEL1_SPAN).min(end);
            let chunks = (last - first).div_ceil(LEVEL2_SPAN) as usize;
            match self.next_table(self.root().entry(table_index(gigabyte, 1)))? {
                None => needed += 1 + chunks,
                Some(level2) => {
                    for chunk in (first..last).step_by(LEVEL2_SPAN as usize) {
                        if self
                            .next_table(level2.entry(table_index(chunk, 2)))?
                            .is_none()
                        {
                            needed += 1;
                        }
                    }
                }
            }
            gigabyte = gigabyte.saturating_add(LEVEL1_SPAN);
        }
        Ok(needed)
    }

    /// Maps `[va, va + len)` to `[pa, pa + len)` with 4 KiB pages.
    ///
    /// Refuses W+X, executable device memory, misaligned or out-of-range
    /// requests, and any page that is already mapped, before changing anything.
    pub fn map(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        permissions: Permissions,
        attributes: MemoryAttributes,
    ) -> Result<(), MapError> {
        let end = check_range(va, len)?;
        let pa_end = pa.checked_add(len).ok_or(MapError::OutOfRange)?;
        if pa_end > PHYSICAL_LIMIT {
            return Err(MapError::OutOfRange);
        }
        // Validates permissions, attributes and the alignment of `pa`.
        page_descriptor(pa, permissions, attributes)?;
        for page in pages(va, end) {
            if self.mapped_leaf(page).is_ok() {
                return Err(MapError::AlreadyMapped);
            }
        }
        if self.tables_needed(va, end)? > self.free_tables() {
            return Err(MapError::OutOfTables);
        }
        for (page, frame) in pages(va, end).zip(pages(pa, pa_end)) {
            let level2 = self.table_or_new(self.root().entry(table_index(page, 1)))?;
            let level3 = self.table_or_new(level2.entry(table_index(page, 2)))?;
            let descriptor = page_descriptor(frame, permissions, attributes)?;
            level3
                .entry(table_index(page, 3))
                .store(descriptor.bits(), Ordering::Release);
        }
        // Entries went from invalid to valid: no TLB holds them, but the walker
        // must see the stores before anything uses the new addresses.
        tlb::tables_written();
        Ok(())
    }

    /// Maps `[start, end)` (rounded out to pages) at its own address.
    pub fn identity_map(
        &mut self,
        start: u64,
        end: u64,
        permissions: Permissions,
        attributes: MemoryAttributes,
    ) -> Result<(), MapError> {
        let first = start & !(PAGE_SIZE - 1);
        let last = end.checked_add(PAGE_SIZE - 1).ok_or(MapError::OutOfRange)? & !(PAGE_SIZE - 1);
        if last <= first {
            return Ok(());
        }
        self.map(first, first, last - first, permissions, attributes)
    }

    /// Maps `[alias, alias + len)` to the physical pages behind
    /// `[existing, existing + len)`, with the same memory type and
    /// `permissions`. Both views then share memory: a store through one is
    /// seen through the other (data caches are physically tagged), but
    /// instructions must be synchronised at the alias before running there.
    pub fn map_alias(
        &mut self,
        alias: u64,
        existing: u64,
        len: u64,
        permissions: Permissions,
    ) -> Result<(), MapError> {
        let end = check_range(alias, len)?;
        let existing_end = check_range(existing, len)?;
        permission_bits(permissions)?;
        // Check everything first, so a refusal changes nothing.
        for (page, source) in pages(alias, end).zip(pages(existing, existing_end)) {
            if self.mapped_leaf(page).is_ok() {
                return Err(MapError::AlreadyMapped);
            }
            let found = self.translate(source).ok_or(MapError::NotMapped)?;
            page_descriptor(found.physical, permissions, found.attributes)?;
        }
        if self.tables_needed(alias, end)? > self.free_tables() {
            return Err(MapError::OutOfTables);
        }
        for (page, source) in pages(alias, end).zip(pages(existing, existing_end)) {
            let found = self.translate(source).ok_or(MapError::NotMapped)?;
            self.map(
                page,
                found.physical,
                PAGE_SIZE,
                permissions,
                found.attributes,
            )?;
        }
        Ok(())
    }

    /// Removes the translations of `[va, va + len)`, every page of which must
    /// be mapped, and invalidates their TLB entries. Tables stay allocated.
    pub fn unmap(&mut self, va: u64, len: u64) -> Result<(), MapError> {
        let end = check_range(va, len)?;
        for page in pages(va, end) {
            self.mapped_leaf(page)?;
        }
        for page in pages(va, end) {
            let (entry, _) = self.mapped_leaf(page)?;
            entry.store(0, Ordering::Release);
        }
        tlb::invalidate_pages(va, end);
        Ok(())
    }

    /// Sets the permissions of `[va, va + len)`, every page of which must be
    /// mapped, keeping each page's address and memory type, and invalidates
    /// the TLB entries of those pages. Permission changes need no
    /// break-before-make: only the address, type or size would.
    pub fn protect(&mut self, va: u64, len: u64, permissions: Permissions) -> Result<(), MapError> {
        let end = check_range(va, len)?;
        let bits = permission_bits(permissions)?;
        for page in pages(va, end) {
            let (_, descriptor) = self.mapped_leaf(page)?;
            if MemoryAttributes::from_descriptor(descriptor) != Some(MemoryAttributes::Normal)
                && permissions.contains(Permissions::EXECUTE)
            {
                return Err(MapError::ExecutableDevice);
            }
        }
        let kept = Descriptor::ADDRESS | Descriptor::ATTRIBUTE_INDEX;
        for page in pages(va, end) {
            let (entry, descriptor) = self.mapped_leaf(page)?;
            entry.store(((descriptor & kept) | bits).bits(), Ordering::Release);
        }
        tlb::invalidate_pages(va, end);
        Ok(())
    }

    /// The translation of the page holding `va`, if it is mapped (possibly
    /// with no access).
    pub fn translate(&self, va: u64) -> Option<Mapping> {
        if va >= VIRTUAL_LIMIT {
            return None;
        }
        let (_, descriptor) = self.mapped_leaf(va & !(PAGE_SIZE - 1)).ok()?;
        Some(Mapping {
            physical: (descriptor & Descriptor::ADDRESS).bits(),
            permissions: permissions_of(descriptor),
            attributes: MemoryAttributes::from_descriptor(descriptor)?,
        })
    }

    /// Whether every byte of `[start, start + len)` is accessible (a valid
    /// translation, so at least readable at EL1). An empty range is.
    pub fn is_accessible(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        pages(start & !(PAGE_SIZE - 1), end).all(|page| {
            self.translate(page)
                .is_some_and(|m| !m.permissions.is_empty())
        })
    }

    /// Calls `f(start, len)` for each maximal run of accessible pages within
    /// `[start, start + len)`, clipped to the range.
    pub(super) fn for_each_accessible_run(
        &self,
        start: u64,
        len: u64,
        mut f: impl FnMut(u64, u64),
    ) {
        let end = start.saturating_add(len);
        let mut run: Option<u64> = None;
        for page in pages(start & !(PAGE_SIZE - 1), end) {
            let accessible = self
                .translate(page)
                .is_some_and(|m| !m.permissions.is_empty());
            match (accessible, run) {
                (true, None) => run = Some(page.max(start)),
                (false, Some(from)) => {
                    f(from, page - from);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            f(from, end - from);
        }
    }
}
