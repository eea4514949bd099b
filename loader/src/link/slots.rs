//! Filling a module's GOT slots and stubs.

use alloc::vec::Vec;

use crate::arch::Machine;
use crate::arch::RelocationProblem;
use crate::arch::{aarch64, write_field, x86_64, Range, SlotSizes};
use crate::error::{ErrorKind, LoadError};
use crate::memory::LayoutBytes;
use crate::object::Object;
use crate::plan::{Layout, Placement};

use super::mismatch;

#[inline]
pub(crate) fn fill_got_and_stubs(
    object: &Object<'_>,
    layout: &Layout<'_>,
    values: &[Option<u64>],
    bytes: &mut LayoutBytes<'_>,
) -> Result<(), LoadError> {
    let sizes = SlotSizes::of(object.machine);
    let got = Slots {
        object,
        values,
        entries: layout
            .got_slot
            .iter()
            .enumerate()
            .filter_map(|(symbol, slot)| Some(((*slot)?, symbol, 0)))
            .collect(),
        area: layout.got,
        size: sizes.got_slot,
    };
    got.fill(bytes, |slot, value| {
        write_field(slot, 0, slot.len(), i128::from(value), Range::Either)
    })?;
    let stubs = Slots {
        object,
        values,
        entries: layout
            .stub_slot
            .iter()
            .map(|(&(symbol, addend), &slot)| (slot, symbol, addend))
            .collect(),
        area: layout.stubs,
        size: sizes.stub,
    };
    stubs.fill(bytes, |stub, value| match object.machine {
        Machine::X86_64 => x86_64::write_stub(stub, value),
        Machine::AArch64 => aarch64::write_veneer(stub, value),
    })
}

/// One area of fixed-size slots (the GOT, the stubs) and what each slot holds.
pub(crate) struct Slots<'s, 'o> {
    object: &'s Object<'o>,
    values: &'s [Option<u64>],
    /// `(slot, symbol index, addend)`: the slot holds or jumps to symbol + addend.
    entries: Vec<(u32, usize, i64)>,
    area: Placement,
    size: u64,
}

impl Slots<'_, '_> {
    /// Writes each slot with `write(slot_bytes, target_address)`.
    fn fill(
        &self,
        bytes: &mut LayoutBytes<'_>,
        write: impl Fn(&mut [u8], u64) -> Result<(), RelocationProblem>,
    ) -> Result<(), LoadError> {
        let broken = || mismatch(self.object, self.area.kind, self.area.size, 0);
        for &(slot, index, addend) in &self.entries {
            let value = self
                .values
                .get(index)
                .copied()
                .flatten()
                .ok_or_else(|| discarded_target(self.object, index))?;
            let slot_bytes = self
                .area
                .range(u64::from(slot).saturating_mul(self.size), self.size)
                .and_then(|range| bytes.get_mut(range))
                .ok_or_else(broken)?;
            write(slot_bytes, value.wrapping_add_signed(addend)).map_err(|_| broken())?;
        }
        Ok(())
    }
}

pub(crate) fn discarded_target(object: &Object<'_>, index: usize) -> LoadError {
    object.error(ErrorKind::Symbol {
        index,
        name: object.symbol_name(index),
        problem: crate::error::SymbolProblem::BadSectionIndex {
            shndx: object.symbols.get(index).map_or(0, |symbol| symbol.shndx),
        },
    })
}
