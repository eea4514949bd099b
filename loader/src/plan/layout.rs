//! Laying a module's pieces out, segment by segment.

use alloc::vec::Vec;

use crate::addr::{Alignment, PageSize};
use crate::arch::RelocationType;
use crate::kinds::{Extent, SectionKind, Segment};
use crate::plan::{Placement, EMPTY};
use crate::Plan;

/// Lays pieces out one after another, segment by segment, each segment on
/// pages of its own.
pub(crate) struct Builder {
    /// The pages of the region the module goes to: segments start and end
    /// on their boundaries.
    pub(crate) page: Alignment,
    pub(crate) page_size: PageSize,
    pub(crate) cursor: u64,
    pub(crate) kinds: [Option<Extent>; 6],
    pub(crate) segments: [Option<Extent>; 3],
    pub(crate) current: Option<Segment>,
    pub(crate) align: Option<Alignment>,
    pub(crate) overflowed: bool,
}

impl Builder {
    /// An empty layout for a region with pages of `page`.
    pub(crate) fn new(page: PageSize) -> Self {
        Self {
            page: page.alignment(),
            page_size: page,
            cursor: 0,
            kinds: [None; 6],
            segments: [None; 3],
            current: None,
            align: None,
            overflowed: false,
        }
    }

    #[inline]
    pub(crate) fn start_segment(&mut self, segment: Segment) {
        self.close_segment();
        self.current = Some(segment);
    }

    /// Rounds the open segment up to whole pages.
    #[inline]
    pub(crate) fn close_segment(&mut self) {
        if let Some(extent) = self
            .current
            .and_then(|segment| self.segments.get_mut(segment.slot()))
            .and_then(Option::as_mut)
        {
            match self
                .page
                .align_up(extent.offset.saturating_add(extent.size))
            {
                Some(end) => {
                    extent.size = end.saturating_sub(extent.offset);
                    self.cursor = end;
                }
                None => self.overflowed = true,
            }
        }
        self.current = None;
    }

    /// Places a piece, or records that the layout overflowed (which makes
    /// `finish` fail) so no caller can drop a piece by ignoring `None`.
    #[inline]
    pub(crate) fn place(
        &mut self,
        kind: SectionKind,
        size: u64,
        align: Alignment,
    ) -> Option<Placement> {
        let placed = self.try_place(kind, size, align);
        if placed.is_none() {
            self.overflowed = true;
        }
        placed
    }

    #[inline]
    pub(crate) fn try_place(
        &mut self,
        kind: SectionKind,
        size: u64,
        align: Alignment,
    ) -> Option<Placement> {
        let segment = self.current?;
        let segment_extent = self.segments.get_mut(segment.slot())?;
        if segment_extent.is_none() {
            // A segment starts on a fresh page, aligned for its strictest piece;
            // its alignment can only grow, which the reservation's alignment covers.
            let offset = self.page.max(align).align_up(self.cursor)?;
            *segment_extent = Some(Extent {
                offset,
                size: 0,
                align: self.page,
            });
            self.cursor = offset;
        }
        let offset = align.align_up(self.cursor)?;
        let end = offset.checked_add(size)?;
        self.cursor = end;
        if let Some(extent) = segment_extent {
            extent.size = end.saturating_sub(extent.offset);
            extent.align = extent.align.max(align);
            self.align = Some(self.align.unwrap_or(self.page).max(extent.align));
        }
        let slot = self.kinds.get_mut(kind.slot())?;
        let extent = slot.get_or_insert(Extent {
            offset,
            size: 0,
            align: Alignment::BYTE,
        });
        extent.size = end.saturating_sub(extent.offset);
        extent.align = extent.align.max(align);
        Some(Placement { kind, offset, size })
    }

    #[inline]
    pub(crate) fn finish(
        mut self,
        got_slots: u32,
        stub_slots: u32,
        pending_imports: u32,
        relocations: Vec<(RelocationType, u64)>,
    ) -> Option<Plan> {
        self.close_segment();
        if self.overflowed {
            return None;
        }
        let size = self.cursor.max(self.page.bytes());
        Some(Plan {
            kinds: self.kinds.map(|extent| extent.unwrap_or(EMPTY)),
            segments: self.segments.map(|extent| extent.unwrap_or(EMPTY)),
            size,
            align: self.align.unwrap_or(self.page),
            page: self.page_size,
            got_slots,
            stub_slots,
            pending_imports,
            relocations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::A16;
    use alloc::vec::Vec;

    /// Code of 100 bytes, read-only data of 5000 and writable data of 10,
    /// laid out in pages of `page`.
    fn three_segments(page: PageSize) -> Plan {
        let mut builder = Builder::new(page);
        builder.start_segment(Segment::Code);
        builder.place(SectionKind::Text, 100, A16);
        builder.start_segment(Segment::ReadOnly);
        builder.place(SectionKind::ReadOnly, 5000, A16);
        builder.start_segment(Segment::Writable);
        builder.place(SectionKind::Data, 10, A16);
        builder.finish(0, 0, 0, Vec::new()).expect("a plan")
    }

    /// Each segment takes whole pages of the region's page size, so the
    /// plan's offsets and sizes follow it; the exact sizes do not change.
    #[test]
    fn segments_take_whole_pages_of_the_page_size() {
        let cases = [
            // (page, read-only pages, total pages)
            (PageSize::Size4KiB, 2, 4),
            (PageSize::Size16KiB, 1, 3),
            (PageSize::Size64KiB, 1, 3),
        ];
        for (page, read_only_pages, total_pages) in cases {
            let bytes = page.bytes();
            let plan = three_segments(page);
            assert_eq!(plan.page_size(), page);
            assert_eq!(plan.size(), total_pages * bytes, "{page}");
            assert_eq!(plan.alignment(), page.alignment(), "{page}");
            let code = plan.segment(Segment::Code);
            let read_only = plan.segment(Segment::ReadOnly);
            let writable = plan.segment(Segment::Writable);
            assert_eq!((code.offset, code.size), (0, bytes), "{page}");
            assert_eq!(
                (read_only.offset, read_only.size),
                (bytes, read_only_pages * bytes),
                "{page}"
            );
            assert_eq!(
                (writable.offset, writable.size),
                ((1 + read_only_pages) * bytes, bytes),
                "{page}"
            );
            assert_eq!(plan.kind(SectionKind::Text).size, 100);
            assert_eq!(plan.kind(SectionKind::ReadOnly).size, 5000);
            assert_eq!(plan.kind(SectionKind::Data).offset, writable.offset);
        }
    }

    /// A piece aligned beyond the page makes its segment (and the module)
    /// that aligned; an empty layout still takes one page.
    #[test]
    fn alignment_beyond_the_page_and_empty_layouts() {
        let big = Alignment::new(1 << 17).unwrap();
        for page in [PageSize::Size4KiB, PageSize::Size16KiB, PageSize::Size64KiB] {
            let mut builder = Builder::new(page);
            builder.start_segment(Segment::Code);
            builder.place(SectionKind::Text, 8, A16);
            builder.start_segment(Segment::ReadOnly);
            builder.place(SectionKind::ReadOnly, 8, big);
            let plan = builder.finish(0, 0, 0, Vec::new()).unwrap();
            assert_eq!(plan.segment(Segment::ReadOnly).offset, 1 << 17, "{page}");
            assert_eq!(plan.alignment(), big);
            assert_eq!(plan.size(), (1 << 17) + page.bytes());
            let empty = Builder::new(page).finish(0, 0, 0, Vec::new()).unwrap();
            assert_eq!(empty.size(), page.bytes());
        }
    }
}
