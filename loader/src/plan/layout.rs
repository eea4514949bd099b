//! Laying a module's pieces out, segment by segment.

use alloc::vec::Vec;

use crate::addr::Alignment;
use crate::arch::RelocationType;
use crate::kinds::{Extent, SectionKind, Segment};
use crate::plan::{Placement, EMPTY};
use crate::Plan;

/// Lays pieces out one after another, segment by segment.
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) cursor: u64,
    pub(crate) kinds: [Option<Extent>; 6],
    pub(crate) segments: [Option<Extent>; 3],
    pub(crate) current: Option<Segment>,
    pub(crate) align: Option<Alignment>,
    pub(crate) overflowed: bool,
}

impl Builder {
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
            match Alignment::PAGE.align_up(extent.offset.saturating_add(extent.size)) {
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
            let offset = Alignment::PAGE.max(align).align_up(self.cursor)?;
            *segment_extent = Some(Extent {
                offset,
                size: 0,
                align: Alignment::PAGE,
            });
            self.cursor = offset;
        }
        let offset = align.align_up(self.cursor)?;
        let end = offset.checked_add(size)?;
        self.cursor = end;
        if let Some(extent) = segment_extent {
            extent.size = end.saturating_sub(extent.offset);
            extent.align = extent.align.max(align);
            self.align = Some(self.align.unwrap_or(Alignment::PAGE).max(extent.align));
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
        let size = self.cursor.max(Alignment::PAGE.bytes());
        Some(Plan {
            kinds: self.kinds.map(|extent| extent.unwrap_or(EMPTY)),
            segments: self.segments.map(|extent| extent.unwrap_or(EMPTY)),
            size,
            align: self.align.unwrap_or(Alignment::PAGE),
            got_slots,
            stub_slots,
            pending_imports,
            relocations,
        })
    }
}
