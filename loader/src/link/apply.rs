//! Applying a module's relocations, one loop per machine.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::OnceCell;

use crate::arch::stub_addend;
use crate::arch::Machine;
use crate::arch::Rela;
use crate::arch::RelocationProblem;
use crate::arch::{aarch64, x86_64, FixupInputs, Linking, SlotSizes, NO_FAST_ADDRESS};
use crate::error::LoadError;
use crate::memory::LayoutBytes;
use crate::names::NameMap;
use crate::object::relocation_error;
use crate::object::Object;
use crate::plan::{Layout, Plan};

use super::mismatch;
use super::unwind::empty_discarded_fdes;
use super::{slot_address, Targets};

/// Applies every relocation of `object` to its placed bytes, section by
/// section, each machine's loop inlining its own engine's common path.
/// Returns how many were applied and which stubs were used.
#[inline]
pub(crate) fn apply_relocations(
    object: &Object<'_>,
    layout: &Layout<'_>,
    plan: &Plan,
    targets: &Targets,
    (values, absent_weak): (&[Option<u64>], &[bool]),
    bytes: &mut LayoutBytes<'_>,
) -> Result<(u64, Vec<bool>), LoadError> {
    let got_base = targets.got;
    let stub_base = targets.stubs;
    let SlotSizes {
        got_slot: got_size,
        stub: stub_size,
        ..
    } = SlotSizes::of(object.machine);
    let mut stub_used = vec![false; plan.stub_slots() as usize];
    let mut applied = 0u64;
    // Whole records only for entries the fast path declines: a module
    // whose entries all take it (most x86-64 code) never builds them.
    let symbol_targets = SymbolTargets {
        layout,
        values,
        absent_weak,
        got: got_base,
        got_size,
        built: OnceCell::new(),
    };
    let mut first_entry = 0usize;
    // S alone, 8 bytes a symbol, for the fast path: the symbols of a
    // large module's calls are all over the table, and 8 bytes a symbol
    // keep far more of it in the first-level cache than whole records.
    let addresses: Vec<u64> = values
        .iter()
        .map(|value| value.unwrap_or(NO_FAST_ADDRESS))
        .collect();
    for relocations in &object.relocations {
        let first = first_entry;
        first_entry = first_entry.saturating_add(relocations.len());
        let Some(placement) = layout.placements.get(relocations.target).copied().flatten() else {
            continue;
        };
        let section_target = targets
            .sections
            .get(relocations.target)
            .copied()
            .unwrap_or(0);
        let section_bytes = placement
            .whole()
            .and_then(|range| bytes.get_mut(range))
            .ok_or_else(|| mismatch(object, placement.kind, placement.offset, plan.size()))?;
        let unwind = layout.unwind.contains(&relocations.target);
        // An unwind table describes every function of its object, those
        // of COMDAT copies another module owns too. Their entries point
        // into the table itself (in reach of any field), and are then
        // given an empty range, so no unwinder takes them for code.
        let unwind_values: Vec<Option<u64>> = match unwind {
            true => values
                .iter()
                .map(|value| value.or(Some(section_target)))
                .collect(),
            false => Vec::new(),
        };
        let unwind_addresses: Vec<u64> = unwind_values.iter().flatten().copied().collect();
        let unwind_targets = SymbolTargets {
            layout,
            values: &unwind_values,
            absent_weak,
            got: got_base,
            got_size,
            built: OnceCell::new(),
        };
        let mut section = SectionFixups {
            object,
            index: relocations.target,
            symbols: if unwind {
                &unwind_targets
            } else {
                &symbol_targets
            },
            stub_slots: &layout.stub_slot,
            got: got_base,
            stubs: stub_base,
            stub_size,
            stub_used: &mut stub_used,
        };
        let fast = x86_64::Section {
            entries: relocations.entries,
            symbol_base: relocations.symbol_base,
            target: section_target,
            symbols: if unwind {
                &unwind_addresses
            } else {
                &addresses
            },
        };
        // One loop per machine, in its arch file, so each inlines its own
        // engine's common path.
        match object.machine {
            // Code built without `-fPIC` (kernel code, typically) has no
            // load to relax: its loop needs no relaxation bits and no selects.
            Machine::X86_64 if layout.relaxed.any_in(first, relocations.len()) => {
                let mut relaxed = layout.relaxed.cursor(first);
                x86_64::apply_section::<true, _>(
                    &fast,
                    move || relaxed.next_bit(),
                    section_bytes,
                    &mut section,
                )
            }
            Machine::X86_64 => {
                x86_64::apply_section::<false, _>(&fast, || false, section_bytes, &mut section)
            }
            Machine::AArch64 => aarch64::apply_section(
                fast.entries,
                fast.symbol_base,
                section_target,
                section_bytes,
                &mut section,
            ),
        }?;
        if unwind {
            let data = object
                .sections
                .get(relocations.target)
                .and_then(|section| section.data)
                .unwrap_or_default();
            empty_discarded_fdes(object.machine, data, relocations, values, section_bytes);
        }
        applied = applied.saturating_add(relocations.len() as u64);
    }
    Ok((applied, stub_used))
}

/// What the machines' loops ask of one relocation section's module (see
/// [`Linking`]): its symbols' records, built on first use, and its GOT and
/// stubs.
pub(crate) struct SectionFixups<'s, 'o> {
    object: &'s Object<'o>,
    /// The index of the section the entries patch.
    index: usize,
    symbols: &'s SymbolTargets<'s>,
    /// The plan's stubs, by `(symbol, addend key)`.
    stub_slots: &'s NameMap<(usize, i64), u32>,
    got: u64,
    stubs: u64,
    stub_size: u64,
    /// Per stub: whether a call went through it.
    stub_used: &'s mut [bool],
}

impl Linking for SectionFixups<'_, '_> {
    type Symbol = SymbolTarget;
    type Error = LoadError;

    #[inline]
    fn symbol(&self, index: usize) -> Option<SymbolTarget> {
        self.symbols.get().get(index).copied()
    }

    #[inline(always)]
    fn inputs(
        &self,
        entry: &Rela,
        symbol: &SymbolTarget,
        place: u64,
    ) -> Option<(FixupInputs, u32)> {
        // Nearly every call's stub has addend key 0 (every x86-64 one
        // does): that one sits in the symbol's record.
        let key = stub_addend(self.object.machine, entry.r_addend);
        let stub = if key == 0 {
            symbol.stub
        } else {
            self.stub_slots
                .get(&(entry.r_sym(), key))
                .copied()
                .unwrap_or(SymbolTarget::NO_SLOT)
        };
        let inputs = FixupInputs {
            symbol: symbol.address()?,
            addend: entry.r_addend,
            place,
            got: self.got,
            got_slot: symbol.got_slot(),
            stub: slot_address(self.stubs, self.stub_size, stub),
            symbol_size: 0,
        };
        Some((inputs, stub))
    }

    #[inline]
    fn symbol_size(&self, entry: &Rela) -> u64 {
        self.object
            .symbols
            .get(entry.r_sym())
            .map_or(0, |symbol| symbol.size)
    }

    #[inline]
    fn is_absent_weak(&self, symbol: &SymbolTarget) -> bool {
        symbol.is(SymbolTarget::ABSENT_WEAK)
    }

    #[inline]
    fn used_stub(&mut self, slot: u32) {
        mark_used(self.stub_used, slot);
    }

    #[cold]
    fn error(&self, entry: &Rela, problem: RelocationProblem) -> LoadError {
        relocation_error(self.object, self.index, entry, problem)
    }
}

pub(crate) fn mark_used(used: &mut [bool], slot: u32) {
    if let Some(used) = used.get_mut(slot as usize) {
        *used = true;
    }
}

/// What relocating needs of one symbol, gathered once for all its entries
/// into 24 bytes, so that the records of a large module stay in cache.
#[derive(Clone, Copy)]
pub(crate) struct SymbolTarget {
    /// S, when [`Self::HAS_ADDRESS`] is set (a discarded section has none).
    address: u64,
    /// The target address of its GOT slot, when [`Self::HAS_GOT_SLOT`] is set.
    got_slot: u64,
    /// Its stub (x86-64) or addend-0 veneer (AArch64), or [`Self::NO_SLOT`].
    stub: u32,
    flags: u32,
}

impl SymbolTarget {
    /// No stub: slot numbers are counted per module, far below this.
    pub(crate) const NO_SLOT: u32 = u32::MAX;
    const HAS_ADDRESS: u32 = 1;
    const HAS_GOT_SLOT: u32 = 2;
    /// A weak undefined symbol nothing defines (AArch64 resolves it
    /// differently per relocation type).
    const ABSENT_WEAK: u32 = 4;

    #[inline(always)]
    fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    #[inline(always)]
    fn address(&self) -> Option<u64> {
        self.is(Self::HAS_ADDRESS).then_some(self.address)
    }

    #[inline(always)]
    fn got_slot(&self) -> Option<u64> {
        self.is(Self::HAS_GOT_SLOT).then_some(self.got_slot)
    }
}

/// One [`SymbolTarget`] per symbol, for a GOT of `got_size`-byte slots at
/// target address `got`, built on first use.
pub(crate) struct SymbolTargets<'s> {
    layout: &'s Layout<'s>,
    values: &'s [Option<u64>],
    absent_weak: &'s [bool],
    got: u64,
    got_size: u64,
    built: OnceCell<Vec<SymbolTarget>>,
}

impl SymbolTargets<'_> {
    /// One record per symbol, built by the first call.
    fn get(&self) -> &[SymbolTarget] {
        self.built.get_or_init(|| self.build())
    }

    fn build(&self) -> Vec<SymbolTarget> {
        let flag = |set: bool, flag: u32| if set { flag } else { 0 };
        let mut targets: Vec<SymbolTarget> = self
            .values
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let got_slot = self.layout.got_slot.get(index).copied().flatten();
                let slot = got_slot.unwrap_or(SymbolTarget::NO_SLOT);
                SymbolTarget {
                    address: address.unwrap_or(0),
                    got_slot: slot_address(self.got, self.got_size, slot).unwrap_or(0),
                    stub: SymbolTarget::NO_SLOT,
                    flags: flag(address.is_some(), SymbolTarget::HAS_ADDRESS)
                        | flag(got_slot.is_some(), SymbolTarget::HAS_GOT_SLOT)
                        | flag(
                            self.absent_weak.get(index) == Some(&true),
                            SymbolTarget::ABSENT_WEAK,
                        ),
                }
            })
            .collect();
        // Nearly every call's stub has addend key 0 (every x86-64 one does):
        // those sit in the symbol's record.
        for (&(symbol, addend), &slot) in &self.layout.stub_slot {
            if let (0, Some(target)) = (addend, targets.get_mut(symbol)) {
                target.stub = slot;
            }
        }
        targets
    }
}
