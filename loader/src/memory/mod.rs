//! One module's memory and its protection state. It makes sure protected pages
//! become writable again before the region reuses them.
//!
//! A module's memory is one contiguous reservation (the default: the bytes
//! are relocated in place, then their pages protected); or grouped: a
//! reservation of whole pages per segment, among other modules' segments of
//! the same permissions, relocated in place like the default; or packed: one
//! [`Piece`] per segment in pages shared with other modules, plus ordinary
//! heap memory where the bytes are staged and relocated for the pieces'
//! addresses until [`ModuleMemory::commit`] copies them into the pieces.
//!
//! The stages reach the bytes by their offsets in the plan's layout, through
//! [`LayoutBytes`], whichever way they are placed.

pub(crate) mod grouping;
pub(crate) mod packing;
pub(crate) mod protection;
pub(crate) mod ranges;
pub(crate) mod region;
pub(crate) mod usage;

use core::ops::Range;

use alloc::vec::Vec;

use crate::addr::{Alignment, PageSize, VirtAddr};
use crate::error::ErrorKind;
use crate::kinds::Permissions;
use crate::kinds::{SectionKind, Segment};
use crate::memory::protection::{MemoryProtection, PageWriter, ProtectionError};
use crate::memory::region::{Piece, Region, Reservation};
use crate::plan::Plan;

pub(crate) struct ModuleMemory {
    backing: Backing,
}

enum Backing {
    Contiguous(Contiguous),
    Grouped(Grouped),
    Packed(Packed),
}

/// A reservation per non-empty segment, each among other modules' segments
/// of the same permissions.
struct Grouped {
    parts: Vec<GroupedPart>,
    protection: Option<&'static dyn MemoryProtection>,
}

/// One segment's reservation.
struct GroupedPart {
    segment: Segment,
    reservation: Reservation,
    /// Bytes before the segment's first byte: nonzero only when something in
    /// it is aligned beyond a page (as for packed pieces).
    phase: u64,
    /// The segment's offset in the plan's layout.
    offset: u64,
}

impl GroupedPart {
    /// The address of the segment's first byte.
    fn target(&self) -> u64 {
        self.reservation.start().as_u64().wrapping_add(self.phase)
    }

    /// The bytes from the segment's first byte to the end of its pages.
    fn bytes(&self) -> &[u8] {
        let phase = usize::try_from(self.phase).unwrap_or(usize::MAX);
        self.reservation.bytes().get(phase..).unwrap_or_default()
    }

    /// [`GroupedPart::bytes`], writable.
    fn bytes_mut(&mut self) -> &mut [u8] {
        let phase = usize::try_from(self.phase).unwrap_or(usize::MAX);
        self.reservation
            .bytes_mut()
            .get_mut(phase..)
            .unwrap_or_default()
    }
}

/// One reservation holding the whole module, laid out as in the plan.
struct Contiguous {
    reservation: Option<Reservation>,
    protection: Option<&'static dyn MemoryProtection>,
}

/// Packed pieces and the staging bytes they are filled from.
struct Packed {
    /// The module laid out as in the plan, in ordinary memory: the stages
    /// copy and relocate here. Emptied (and freed) by `commit`.
    staging: Vec<u8>,
    segments: Vec<PackedSegment>,
    writer: &'static dyn PageWriter,
    /// Whether `commit` wrote the pieces (so there is code to scrub).
    committed: bool,
}

impl Drop for Packed {
    fn drop(&mut self) {
        if self.committed {
            for segment in &mut self.segments {
                segment.piece.scrub(self.writer);
            }
        }
    }
}

/// One segment's piece, and where the segment lies in the staging bytes.
struct PackedSegment {
    segment: Segment,
    piece: Piece,
    /// The address of the segment's first byte: the piece's start, plus the
    /// phase that keeps pieces aligned beyond a page (see `ModuleMemory::packed`).
    target: u64,
    /// The segment's offset in the plan's layout (and in `staging`).
    offset: u64,
    /// Its exact size: from its offset to the end of its last piece.
    len: u64,
}

/// How a loader places its modules' memory: the one place the three
/// placements are told apart when memory is taken (see [`Loader::grouped`]
/// and [`Loader::packed`] for what each does).
///
/// [`Loader::grouped`]: crate::Loader::grouped
/// [`Loader::packed`]: crate::Loader::packed
#[derive(Clone, Copy)]
pub(crate) enum PlacementPolicy {
    /// One reservation per module, its segments side by side.
    Contiguous,
    /// Each segment on pages of its own, beside other modules' segments
    /// with the same permissions.
    Grouped,
    /// Segments packed into pages shared with other modules, written
    /// through the writer.
    Packed(&'static dyn PageWriter),
}

impl ModuleMemory {
    /// Takes the memory a module of `plan` needs from `region`, placed as
    /// `placement` says. Fails with nothing taken.
    pub fn allocate(
        region: &'static Region,
        plan: &Plan,
        placement: PlacementPolicy,
        protection: &'static dyn MemoryProtection,
    ) -> Result<Self, ErrorKind> {
        let backing = match placement {
            PlacementPolicy::Contiguous => region
                .reserve(plan.size(), plan.alignment().bytes())
                .map(|reservation| {
                    Backing::Contiguous(Contiguous {
                        reservation: Some(reservation),
                        protection: None,
                    })
                })
                .ok_or(ErrorKind::OutOfMemory {
                    size: plan.size(),
                    align: plan.alignment().bytes(),
                })?,
            PlacementPolicy::Grouped => Self::grouped(region, plan)?,
            PlacementPolicy::Packed(writer) => Self::packed(region, plan, protection, writer)?,
        };
        Ok(Self { backing })
    }

    /// Packed memory for a module of `plan`: a piece per non-empty segment,
    /// exactly as large as the segment's contents (no page rounding), and
    /// zeroed staging bytes for the whole layout. Fails with nothing taken.
    fn packed(
        region: &'static Region,
        plan: &Plan,
        protection: &'static dyn MemoryProtection,
        writer: &'static dyn PageWriter,
    ) -> Result<Backing, ErrorKind> {
        let mut segments = Vec::with_capacity(Segment::ALL.len());
        for segment in Segment::ALL {
            let Some(needs) = segment_needs(plan, segment)? else {
                continue;
            };
            let SegmentNeeds {
                offset,
                len,
                align,
                phase,
                size,
            } = needs;
            let piece = region.reserve_piece(segment, size, align, protection)?;
            let target = piece.start().as_u64().wrapping_add(phase);
            segments.push(PackedSegment {
                segment,
                piece,
                target,
                offset,
                len,
            });
        }
        let out_of_memory = ErrorKind::OutOfMemory {
            size: plan.size(),
            align: 1,
        };
        let size = usize::try_from(plan.size()).map_err(|_| out_of_memory.clone())?;
        let mut staging = Vec::new();
        staging.try_reserve_exact(size).map_err(|_| out_of_memory)?;
        staging.resize(size, 0);
        Ok(Backing::Packed(Packed {
            staging,
            segments,
            writer,
            committed: false,
        }))
    }

    /// Grouped memory for a module of `plan`: a reservation of whole pages
    /// per non-empty segment (see `grouping.rs`). Fails with nothing taken.
    fn grouped(region: &'static Region, plan: &Plan) -> Result<Backing, ErrorKind> {
        let mut parts = Vec::with_capacity(Segment::ALL.len());
        for segment in Segment::ALL {
            let Some(needs) = segment_needs(plan, segment)? else {
                continue;
            };
            let (offset, phase) = (needs.offset, needs.phase);
            let mut reservation = region
                .reserve_grouped(segment, needs.size, needs.align)
                .ok_or(ErrorKind::OutOfMemory {
                    size: needs.size,
                    align: needs.align.bytes(),
                })?;
            // The bytes before the segment are the module's too (its pages
            // are its own): no earlier module's bytes stay there.
            let phase_bytes = usize::try_from(phase).unwrap_or(usize::MAX);
            if let Some(before) = reservation.bytes_mut().get_mut(..phase_bytes) {
                before.fill(0);
            }
            parts.push(GroupedPart {
                segment,
                reservation,
                phase,
                offset,
            });
        }
        Ok(Backing::Grouped(Grouped {
            parts,
            protection: None,
        }))
    }

    /// The page size of the region the memory is in (4 KiB for a module
    /// with no memory left, which has nothing to protect).
    fn page_size(&self) -> PageSize {
        let region = match &self.backing {
            Backing::Contiguous(memory) => memory.reservation.as_ref().map(Reservation::region),
            Backing::Grouped(grouped) => {
                grouped.parts.first().map(|part| part.reservation.region())
            }
            Backing::Packed(packed) => packed
                .segments
                .first()
                .map(|segment| segment.piece.region()),
        };
        region.map_or(PageSize::Size4KiB, Region::page_size)
    }

    /// Whether the module is packed.
    pub fn is_packed(&self) -> bool {
        matches!(self.backing, Backing::Packed(_))
    }

    /// Where the module's bytes are now (the staging bytes when packed, the
    /// first segment's when grouped).
    pub fn start(&self) -> VirtAddr {
        match &self.backing {
            Backing::Contiguous(memory) => memory
                .reservation
                .as_ref()
                .map_or(VirtAddr::new(0), Reservation::start),
            Backing::Grouped(grouped) => grouped
                .parts
                .first()
                .map_or(VirtAddr::new(0), |part| VirtAddr::new(part.target())),
            Backing::Packed(packed) => VirtAddr::from_ptr(packed.staging.as_ptr()),
        }
    }

    /// Bytes the module takes from the region: the reservation, or the sum of
    /// its pieces.
    pub fn len(&self) -> u64 {
        match &self.backing {
            Backing::Contiguous(memory) => memory.reservation.as_ref().map_or(0, Reservation::len),
            Backing::Grouped(grouped) => grouped
                .parts
                .iter()
                .map(|part| part.reservation.len())
                .fold(0, u64::saturating_add),
            Backing::Packed(packed) => packed
                .segments
                .iter()
                .map(|segment| segment.piece.len())
                .fold(0, u64::saturating_add),
        }
    }

    /// The address the byte at `offset` of the plan's layout, in `segment`,
    /// runs at: the reservation's start plus the offset, or the segment's
    /// grouped reservation or packed piece plus the offset within the
    /// segment. Offsets lie in the layout, so this never wraps.
    pub fn target(&self, segment: Segment, offset: u64) -> u64 {
        match &self.backing {
            Backing::Contiguous(_) => self.start().as_u64().wrapping_add(offset),
            Backing::Grouped(grouped) => target_apart(
                grouped
                    .parts
                    .iter()
                    .map(|part| (part.segment, part.target(), part.offset)),
                segment,
                offset,
            ),
            Backing::Packed(packed) => target_apart(
                packed
                    .segments
                    .iter()
                    .map(|packed| (packed.segment, packed.target, packed.offset)),
                segment,
                offset,
            ),
        }
    }

    /// `(target, size)` of the packed code segment, if there is one.
    pub fn packed_code(&self) -> Option<(VirtAddr, u64)> {
        match &self.backing {
            Backing::Contiguous(_) | Backing::Grouped(_) => None,
            Backing::Packed(packed) => packed
                .segments
                .iter()
                .find(|packed| packed.segment == Segment::Code)
                .map(|code| (VirtAddr::new(code.target), code.len)),
        }
    }

    /// Writable access by offsets in the plan's layout, which exists only
    /// until the pages are protected (or, packed, until the bytes are
    /// committed to their pieces).
    pub fn layout_bytes(&mut self) -> LayoutBytes<'_> {
        let mut blocks = LayoutBytes::default();
        match &mut self.backing {
            Backing::Contiguous(Contiguous {
                reservation: Some(reservation),
                protection: None,
            }) => blocks.push(0, reservation.bytes_mut()),
            Backing::Contiguous(_) => {}
            Backing::Grouped(Grouped {
                parts,
                protection: None,
            }) => {
                for part in parts {
                    let offset = part.offset;
                    blocks.push(offset, part.bytes_mut());
                }
            }
            Backing::Grouped(_) => {}
            Backing::Packed(packed) => blocks.push(0, packed.staging.as_mut_slice()),
        }
        blocks
    }

    /// The bytes as laid out in the plan, in one piece: empty when grouped,
    /// and when packed the staging bytes, which are gone once committed.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Contiguous(memory) => {
                memory.reservation.as_ref().map_or(&[], Reservation::bytes)
            }
            Backing::Grouped(_) => &[],
            Backing::Packed(packed) => &packed.staging,
        }
    }

    /// The bytes of `segment` from its first byte (its offset in the plan's
    /// layout) to the end of its pages, where it is placed now.
    pub fn segment_bytes(&self, segment: Segment, plan: &Plan) -> &[u8] {
        if let Backing::Grouped(grouped) = &self.backing {
            return grouped
                .parts
                .iter()
                .find(|part| part.segment == segment)
                .map_or(&[], GroupedPart::bytes);
        }
        let extent = plan.segment(segment);
        usize::try_from(extent.offset)
            .ok()
            .zip(usize::try_from(extent.size).ok())
            .and_then(|(start, len)| self.bytes().get(start..start.checked_add(len)?))
            .unwrap_or_default()
    }

    /// Packed: copies each segment from the staging bytes into its piece (code
    /// and read-only through the page writer, since their pages are already
    /// read+execute or read-only and may be running other modules' code),
    /// then frees the staging bytes. Nothing to do for contiguous memory.
    pub fn commit(&mut self) -> Result<(), ErrorKind> {
        let Backing::Packed(packed) = &mut self.backing else {
            return Ok(());
        };
        // Set first: a commit that fails halfway has written some pieces.
        packed.committed = true;
        for segment in &mut packed.segments {
            let source = usize::try_from(segment.offset)
                .ok()
                .zip(usize::try_from(segment.len).ok())
                .and_then(|(start, len)| packed.staging.get(start..start.checked_add(len)?))
                .ok_or(ErrorKind::PlanMismatch {
                    kind: first_kind(segment.segment),
                    planned: segment.len,
                    used: packed.staging.len() as u64,
                })?;
            let phase = segment.target.wrapping_sub(segment.piece.start().as_u64());
            if phase == 0 {
                segment.piece.write(source, packed.writer)?;
            } else {
                // A piece aligned beyond a page starts with `phase` unused bytes.
                let mut padded = Vec::new();
                padded
                    .try_reserve_exact(source.len().saturating_add(phase as usize))
                    .map_err(|_| ErrorKind::OutOfMemory {
                        size: segment.piece.len(),
                        align: 1,
                    })?;
                padded.resize(phase as usize, 0);
                padded.extend_from_slice(source);
                segment.piece.write(&padded, packed.writer)?;
            }
        }
        packed.staging = Vec::new();
        Ok(())
    }

    /// Binds a pending import: stores `value` into the GOT slot at layout
    /// `offset` with one aligned 8-byte store. The slot's page is read-only
    /// data, never executable: it is made read-write for the store and
    /// read-only again, so no page is ever writable and executable, and
    /// code on other cores that reads the GOT meanwhile is not disturbed.
    pub fn store_slot(
        &mut self,
        offset: u64,
        value: u64,
        protection: &dyn MemoryProtection,
    ) -> Result<(), ProtectionError> {
        let address = self.target(Segment::ReadOnly, offset);
        let misplaced = ProtectionError { code: -1 };
        if !address.is_multiple_of(8) {
            return Err(misplaced);
        }
        let page_size = self.page_size();
        let page = VirtAddr::new(page_size.page_start(address));
        let size = page_size.bytes();
        protection.protect(page, size, Permissions::READ_WRITE)?;
        // SAFETY: the slot is an aligned word of this module's read-only
        // segment (its offset lies in the layout), which this memory owns
        // and which was just made writable.
        unsafe { crate::memory::region::store_word(address, value) };
        protection.protect(page, size, Permissions::READ_ONLY)
    }

    /// Applies `permissions` to each `(offset, len)` range. On failure, puts every
    /// page back to read-write and reports the platform's error. Packed memory
    /// has its permissions already (its pages got them when first used).
    pub fn protect(
        &mut self,
        protection: &'static dyn MemoryProtection,
        ranges: &[(u64, u64, Permissions)],
    ) -> Result<(), ErrorKind> {
        let memory = match &mut self.backing {
            Backing::Contiguous(memory) => memory,
            Backing::Grouped(grouped) => return grouped.protect(protection),
            Backing::Packed(_) => return Ok(()),
        };
        let start = memory
            .reservation
            .as_ref()
            .map_or(VirtAddr::new(0), Reservation::start);
        let whole = memory.reservation.as_ref().map_or(0, Reservation::len);
        for &(offset, len, permissions) in ranges.iter().filter(|(_, len, _)| *len > 0) {
            debug_assert!(!permissions.is_writable_and_executable());
            let at = start.checked_add(offset).unwrap_or(start);
            if let Err(error) = protection.protect(at, len, permissions) {
                // Leave nothing half-protected: the region may reuse these pages.
                if protection
                    .protect(start, whole, Permissions::READ_WRITE)
                    .is_err()
                {
                    memory.protection = Some(protection);
                }
                return Err(ErrorKind::Protection {
                    start: at,
                    len,
                    code: error.code,
                });
            }
        }
        memory.protection = Some(protection);
        Ok(())
    }
}

/// The address of layout `offset` in `segment`, among segments placed apart,
/// given as `(segment, address of its first byte, its offset in the layout)`.
/// An empty piece (a zero-sized section, an empty GOT) in a segment with no
/// contents gets the module's first segment's address, so references to it
/// stay in reach as they would in one block.
fn target_apart(
    segments: impl Iterator<Item = (Segment, u64, u64)>,
    segment: Segment,
    offset: u64,
) -> u64 {
    let mut first = None;
    for (kind, target, start) in segments {
        if kind == segment {
            return target.wrapping_add(offset.wrapping_sub(start));
        }
        first.get_or_insert(target);
    }
    first.unwrap_or(0)
}

/// What a segment placed apart from the rest of its module needs.
struct SegmentNeeds {
    /// Its offset in the plan's layout.
    offset: u64,
    /// The exact size of its contents.
    len: u64,
    /// The strictest alignment in it.
    align: Alignment,
    /// Bytes to leave before its first byte. Offsets within the segment stay
    /// as in the plan, so its first byte must keep its remainder modulo
    /// `align`: 0 unless something asks for more than a page (segments
    /// start on page boundaries).
    phase: u64,
    /// Bytes to take: `phase` and the contents.
    size: u64,
}

/// What `segment` needs when placed apart, or `None` if it holds nothing.
fn segment_needs(plan: &Plan, segment: Segment) -> Result<Option<SegmentNeeds>, ErrorKind> {
    let Some((offset, len, align)) = contents(plan, segment) else {
        return Ok(None);
    };
    let phase = offset.checked_rem(align.bytes()).unwrap_or(0);
    let size = len
        .checked_add(phase)
        .ok_or(ErrorKind::ModuleTooLarge { size: len })?;
    Ok(Some(SegmentNeeds {
        offset,
        len,
        align,
        phase,
        size,
    }))
}

/// `(offset, exact size, strictest alignment)` of what `segment` holds in
/// `plan`'s layout, or `None` if it holds nothing.
fn contents(plan: &Plan, segment: Segment) -> Option<(u64, u64, Alignment)> {
    let offset = plan.segment(segment).offset;
    let mut end = None::<u64>;
    let mut align = Alignment::BYTE;
    for kind in SectionKind::ALL {
        let extent = plan.kind(kind);
        if kind.segment() != segment || extent.size == 0 {
            continue;
        }
        let kind_end = extent.offset.saturating_add(extent.size);
        end = Some(end.map_or(kind_end, |end| end.max(kind_end)));
        align = align.max(extent.align);
    }
    let len = end?.checked_sub(offset)?;
    (len > 0).then_some((offset, len, align))
}

/// The first kind of a segment, to name it in an error.
fn first_kind(segment: Segment) -> SectionKind {
    match segment {
        Segment::Code => SectionKind::Text,
        Segment::ReadOnly => SectionKind::ReadOnly,
        Segment::Writable => SectionKind::Data,
    }
}

impl Grouped {
    /// Gives each segment its permissions (the writable one has them
    /// already). On failure, puts the segments it asked for back to
    /// read-write (the rest were never touched) and reports the platform's
    /// error.
    fn protect(&mut self, protection: &'static dyn MemoryProtection) -> Result<(), ErrorKind> {
        for (index, part) in self.parts.iter().enumerate() {
            let permissions = part.segment.permissions();
            if permissions == Permissions::READ_WRITE {
                continue;
            }
            debug_assert!(!permissions.is_writable_and_executable());
            let (start, len) = (part.reservation.start(), part.reservation.len());
            if let Err(error) = protection.protect(start, len, permissions) {
                // Leave nothing half-protected: the region may reuse these pages.
                self.protection = Some(protection);
                self.unprotect(index.saturating_add(1));
                return Err(ErrorKind::Protection {
                    start,
                    len,
                    code: error.code,
                });
            }
        }
        self.protection = Some(protection);
        Ok(())
    }

    /// Makes the first `count` segments read-write again, for the region
    /// to reuse; a segment that cannot be stays reserved for good, counted
    /// as lost.
    fn unprotect(&mut self, count: usize) {
        let Some(protection) = self.protection.take() else {
            return;
        };
        // From the last, so that removing a part moves none still to visit.
        for index in (0..count.min(self.parts.len())).rev() {
            let Some(part) = self.parts.get(index) else {
                continue;
            };
            let writable = part.segment.permissions() == Permissions::READ_WRITE
                || protection
                    .protect(
                        part.reservation.start(),
                        part.reservation.len(),
                        Permissions::READ_WRITE,
                    )
                    .is_ok();
            if !writable {
                // The next segment placed here would be handed pages it
                // cannot write: losing them is better than faulting.
                self.parts.remove(index).reservation.keep_out_of_use();
            }
        }
    }
}

impl Drop for Grouped {
    fn drop(&mut self) {
        self.unprotect(self.parts.len());
    }
}

/// A module's bytes by their offsets in the plan's layout, wherever they are
/// placed: one contiguous block, or a block per segment. Held in place (no
/// allocation): it is made twice a load.
#[derive(Default)]
pub(crate) struct LayoutBytes<'m> {
    /// `(offset in the layout, bytes from there)`, one per block; the first
    /// `count` are in use.
    blocks: [(u64, &'m mut [u8]); Segment::ALL.len()],
    count: usize,
}

impl<'m> LayoutBytes<'m> {
    /// Adds the block that starts at `offset` of the layout; one more than
    /// a block per segment is dropped (never made).
    fn push(&mut self, offset: u64, bytes: &'m mut [u8]) {
        if let Some(block) = self.blocks.get_mut(self.count) {
            *block = (offset, bytes);
            self.count = self.count.saturating_add(1);
        }
    }

    fn used(&self) -> &[(u64, &'m mut [u8])] {
        self.blocks.get(..self.count).unwrap_or_default()
    }

    fn used_mut(&mut self) -> &mut [(u64, &'m mut [u8])] {
        self.blocks.get_mut(..self.count).unwrap_or_default()
    }

    /// The bytes at `range` of the layout, if one block holds them all.
    pub fn get_mut(&mut self, range: Range<usize>) -> Option<&mut [u8]> {
        let block = block_of(self.used(), &range)?;
        let (offset, bytes) = self.used_mut().get_mut(block)?;
        let skip = usize::try_from(*offset).ok()?;
        bytes.get_mut(range.start.checked_sub(skip)?..range.end.checked_sub(skip)?)
    }

    /// The bytes at `range` of the layout, if one block holds them all.
    pub fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        let (offset, bytes) = self.used().get(block_of(self.used(), &range)?)?;
        let skip = usize::try_from(*offset).ok()?;
        bytes.get(range.start.checked_sub(skip)?..range.end.checked_sub(skip)?)
    }

    /// Zeroes every byte of every block outside `written`, ranges of the
    /// layout sorted by start.
    pub fn zero_except(&mut self, written: &[Range<usize>]) {
        for (offset, bytes) in self.used_mut() {
            let Ok(base) = usize::try_from(*offset) else {
                continue;
            };
            let end = bytes.len();
            let mut zeroed_to = 0usize;
            let inside = written.iter().map(|range| {
                range.start.saturating_sub(base).min(end)..range.end.saturating_sub(base).min(end)
            });
            for range in inside.chain(core::iter::once(end..end)) {
                if let Some(gap) = bytes.get_mut(zeroed_to..range.start) {
                    gap.fill(0);
                }
                zeroed_to = zeroed_to.max(range.end);
            }
        }
    }
}

/// The block `range` starts in (or, empty, ends a block at).
fn block_of(parts: &[(u64, &mut [u8])], range: &Range<usize>) -> Option<usize> {
    let start = range.start as u64;
    let within = |at: u64, len: u64| at < len || (range.is_empty() && at == len);
    parts.iter().position(|(offset, bytes)| {
        start
            .checked_sub(*offset)
            .is_some_and(|at| within(at, bytes.len() as u64))
    })
}

impl Drop for Contiguous {
    fn drop(&mut self) {
        let Some(protection) = self.protection else {
            return;
        };
        let start = self
            .reservation
            .as_ref()
            .map_or(VirtAddr::new(0), Reservation::start);
        let len = self.reservation.as_ref().map_or(0, Reservation::len);
        if protection
            .protect(start, len, Permissions::READ_WRITE)
            .is_err()
        {
            // The next module placed here would be handed pages it cannot
            // write. Losing the block is better than faulting, so it stays
            // reserved, counted as lost.
            if let Some(reservation) = self.reservation.take() {
                reservation.keep_out_of_use();
            }
        }
    }
}
