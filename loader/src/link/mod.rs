//! Linking a placed module: resolving its names, filling its GOT and
//! stubs, and applying its relocations.

use alloc::vec::Vec;

use crate::addr::VirtAddr;
use crate::error::{ErrorKind, LoadError};
use crate::kinds::SectionKind;
use crate::memory::LayoutBytes;
use crate::namespace::{ModuleNames, NameList};
use crate::object::Object;
use crate::plan::{Binding, Layout};

pub(crate) mod apply;
pub(crate) mod lazy;
pub(crate) mod resolve;
pub(crate) mod slots;
pub(crate) mod unwind;

use apply::SymbolTarget;

/// Target address of each piece. Starts as the load address (run in place).
pub(crate) struct Targets {
    pub sections: Vec<u64>,
    pub got: u64,
    pub stubs: u64,
    pub common: u64,
}

/// Bytes in a GOT slot, on every machine.
pub(crate) const GOT_WORD: u64 = 8;

/// The target address of slot `slot` of an area of `size`-byte slots at
/// `base` (the GOT, the stubs), or `None` for [`SymbolTarget::NO_SLOT`].
/// Slots lie inside the reservation, so this never wraps.
#[inline(always)]
pub(crate) fn slot_address(base: u64, size: u64, slot: u32) -> Option<u64> {
    (slot != SymbolTarget::NO_SLOT).then(|| base.wrapping_add(u64::from(slot).wrapping_mul(size)))
}

/// The target address of `value` in loaded section `section`.
#[inline]
pub(crate) fn own_copy(targets: &Targets, section: usize, value: u64) -> Option<u64> {
    targets
        .sections
        .get(section)
        .map(|base| base.wrapping_add(value))
}

/// S for every symbol, or `None` where it has no address (discarded).
#[inline]
pub(crate) fn symbol_values(
    layout: &Layout<'_>,
    targets: &Targets,
    external: &[Option<u64>],
) -> Vec<Option<u64>> {
    layout
        .bindings
        .iter()
        .enumerate()
        .map(|(index, binding)| match *binding {
            Binding::Unused => Some(0),
            Binding::Section { section, value } => own_copy(targets, section, value),
            Binding::Absolute(value) => Some(value),
            Binding::Common { offset } => Some(targets.common.wrapping_add(offset)),
            Binding::External => external.get(index).copied().flatten(),
            Binding::Yielded { section, value } => external
                .get(index)
                .copied()
                .flatten()
                .or_else(|| own_copy(targets, section, value)),
            Binding::GotBase => Some(targets.got),
            Binding::DsoHandle => layout
                .got_slot
                .get(index)
                .copied()
                .flatten()
                .and_then(|slot| slot_address(targets.got, GOT_WORD, slot)),
            Binding::Discarded => None,
        })
        .collect()
}

/// The non-null entries of the given pointer arrays, in order.
#[inline]
pub(crate) fn read_pointers(
    sections: &[usize],
    layout: &Layout<'_>,
    bytes: &LayoutBytes<'_>,
) -> Vec<VirtAddr> {
    let mut pointers = Vec::new();
    for index in sections {
        let Some(placement) = layout.placements.get(*index).copied().flatten() else {
            continue;
        };
        let array = placement.whole().and_then(|range| bytes.get(range));
        for entry in array.unwrap_or_default().chunks_exact(8) {
            let value = entry.try_into().map_or(0, u64::from_le_bytes);
            // 0 and -1 are the conventional "no entry" markers.
            if value != 0 && value != u64::MAX {
                pointers.push(VirtAddr::new(value));
            }
        }
    }
    pointers
}

/// The module's global definitions (named in `resolve`) at their addresses,
/// indexed by name; those without an address are dropped.
#[inline]
pub(crate) fn definitions(
    globals: NameList,
    layout: &Layout<'_>,
    targets: &Targets,
    values: &[Option<u64>],
) -> ModuleNames {
    globals.finish(|index| match layout.bindings.get(index)? {
        Binding::Yielded { section, value } => own_copy(targets, *section, *value),
        _ => values.get(index).copied().flatten(),
    })
}

pub(crate) fn mismatch(
    object: &Object<'_>,
    kind: SectionKind,
    planned: u64,
    used: u64,
) -> LoadError {
    object.error(ErrorKind::PlanMismatch {
        kind,
        planned,
        used,
    })
}
