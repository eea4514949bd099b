//! Applying a module's relocations, one loop per machine.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::OnceCell;

use crate::arch::stub_addend;
use crate::arch::Machine;
use crate::arch::RelocationProblem;
use crate::arch::{aarch64, x86_64, Applied, FixupInputs, SlotSizes};
use crate::error::LoadError;
use crate::memory::LayoutBytes;
use crate::names::NameMap;
use crate::object::relocation_error;
use crate::object::{Object, Rela, RelocationSection};
use crate::plan::{EntryBits, Layout, Plan};

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
        let section = SectionFixups {
            object,
            index: relocations.target,
            symbols: if unwind {
                &unwind_targets
            } else {
                &symbol_targets
            },
            addresses: if unwind {
                &unwind_addresses
            } else {
                &addresses
            },
            stub_slots: &layout.stub_slot,
            target: section_target,
            got: got_base,
            stubs: stub_base,
            stub_size,
        };
        // One loop per machine, so each inlines its own engine's common path.
        match object.machine {
            Machine::X86_64 => section.apply_x86_64(
                relocations,
                (&layout.relaxed, first),
                section_bytes,
                &mut stub_used,
            ),
            Machine::AArch64 => section.apply_aarch64(relocations, section_bytes, &mut stub_used),
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

/// In [`SectionFixups::addresses`]: the symbol has no address. The fast path
/// declines its entries, and the full engine, which reads the whole record,
/// says why. A symbol whose address happens to be this value (it is not a
/// canonical address) is declined too, and the full engine applies it.
pub(crate) const NO_FAST_ADDRESS: u64 = 1 << 63;

/// The inputs shared by every entry of one relocation section.
pub(crate) struct SectionFixups<'s, 'o> {
    object: &'s Object<'o>,
    /// The index of the section the entries patch.
    index: usize,
    symbols: &'s SymbolTargets<'s>,
    /// Per symbol: its address as in `symbols`, or [`NO_FAST_ADDRESS`].
    addresses: &'s [u64],
    /// The plan's stubs, by `(symbol, addend key)`.
    stub_slots: &'s NameMap<(usize, i64), u32>,
    /// The section's target address.
    target: u64,
    got: u64,
    stubs: u64,
    stub_size: u64,
}

impl SectionFixups<'_, '_> {
    /// Applies the x86-64 `relocations` to the section's `bytes`. Entry `i`
    /// is relaxed if bit `first + i` of `relaxed` is set: the plan's decision.
    /// Marks the stubs calls went through.
    fn apply_x86_64(
        &self,
        relocations: &RelocationSection<'_>,
        (relaxed, first): (&EntryBits, usize),
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        // Code built without `-fPIC` (kernel code, typically) has no load to
        // relax: its loop needs no relaxation bits and no selects.
        if relaxed.any_in(first, relocations.len()) {
            self.apply_x86_64_entries::<true>(relocations, (relaxed, first), bytes, stub_used)
        } else {
            self.apply_x86_64_entries::<false>(relocations, (relaxed, first), bytes, stub_used)
        }
    }

    /// [`Self::apply_x86_64`]'s loop, for a section with relaxed loads
    /// (`RELAXES`) or without. Not inlined into [`Placed::relocate`], so
    /// that this loop has the registers to itself.
    #[inline(never)]
    fn apply_x86_64_entries<const RELAXES: bool>(
        &self,
        relocations: &RelocationSection<'_>,
        (relaxed, first): (&EntryBits, usize),
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let mut relaxed = relaxed.cursor(first);
        for (position, entry) in relocations.entries().enumerate() {
            let relax = RELAXES && relaxed.next_bit();
            // The engine's fast path first: it applies nearly every entry,
            // and declines, writing nothing, where the full path is needed.
            // Loads through a GOT slot (rare outside position-independent
            // references to other modules) take the full path.
            let symbol = self
                .addresses
                .get(entry.r_sym())
                .copied()
                .unwrap_or(NO_FAST_ADDRESS);
            let place = self.target.wrapping_add(entry.r_offset);
            let fast = symbol != NO_FAST_ADDRESS
                && usize::try_from(entry.r_offset).is_ok_and(|offset| {
                    let (r_type, addend) = (entry.r_type, entry.r_addend);
                    if RELAXES {
                        x86_64::apply_fast(r_type, bytes, offset, symbol, addend, place, relax)
                    } else {
                        x86_64::apply_fast_unrelaxed(r_type, bytes, offset, symbol, addend, place)
                    }
                });
            if fast {
                continue;
            }
            // By position: the entry itself would be kept in memory for it,
            // on the fast path too.
            self.apply_one_x86_64(relocations, position, relax, bytes, stub_used)?;
        }
        Ok(())
    }

    /// Entry `position` through the full engine, for what the fast path
    /// declined: it applies the entry (marking its stub if the call went
    /// through it) or says exactly why not.
    #[inline(never)]
    fn apply_one_x86_64(
        &self,
        relocations: &RelocationSection<'_>,
        position: usize,
        relax: bool,
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let Some(entry) = relocations.get(position) else {
            return Ok(());
        };
        let target = self.symbols.get().get(entry.r_sym());
        let applied = (|| {
            let target = target.ok_or(RelocationProblem::BadSymbol)?;
            let offset =
                usize::try_from(entry.r_offset).map_err(|_| RelocationProblem::OutOfBounds)?;
            // An x86-64 stub jumps to the symbol itself: one per symbol.
            let inputs = self
                .inputs(&entry, target, target.stub)
                .ok_or(RelocationProblem::TargetNotLoaded)?;
            x86_64::apply_common(entry.r_type, bytes, offset, &inputs, relax).unwrap_or_else(|| {
                let inputs = self.sized(&entry, &inputs);
                x86_64::apply(entry.r_type, bytes, offset, &inputs, relax)
            })
        })();
        match applied {
            Ok(Applied::Direct) => Ok(()),
            Ok(Applied::ThroughStub) => {
                mark_used(stub_used, target.map_or(SymbolTarget::NO_SLOT, |t| t.stub));
                Ok(())
            }
            Err(problem) => Err(relocation_error(self.object, self.index, &entry, problem)),
        }
    }

    /// Applies the AArch64 `relocations` to the section's `bytes`, marking
    /// the veneers branches went through.
    fn apply_aarch64(
        &self,
        relocations: &RelocationSection<'_>,
        bytes: &mut [u8],
        stub_used: &mut [bool],
    ) -> Result<(), LoadError> {
        let symbols = self.symbols.get();
        for entry in relocations.entries() {
            let fail = |problem| relocation_error(self.object, self.index, &entry, problem);
            let target = symbols
                .get(entry.r_sym())
                .ok_or_else(|| fail(RelocationProblem::BadSymbol))?;
            let offset = usize::try_from(entry.r_offset)
                .map_err(|_| fail(RelocationProblem::OutOfBounds))?;
            // A veneer jumps to symbol plus addend, so each addend has its own.
            let veneer = if entry.r_addend == 0 {
                target.stub
            } else {
                let key = (entry.r_sym(), stub_addend(Machine::AArch64, entry.r_addend));
                self.stub_slots
                    .get(&key)
                    .copied()
                    .unwrap_or(SymbolTarget::NO_SLOT)
            };
            let mut inputs = self
                .inputs(&entry, target, veneer)
                .ok_or_else(|| fail(RelocationProblem::TargetNotLoaded))?;
            if target.is(SymbolTarget::ABSENT_WEAK) {
                inputs.symbol = aarch64::absent_weak_symbol(entry.r_type, inputs.place);
            }
            let outcome = aarch64::apply(entry.r_type, bytes, offset, &self.sized(&entry, &inputs))
                .map_err(fail)?;
            if outcome == Applied::ThroughStub {
                mark_used(stub_used, veneer);
            }
        }
        Ok(())
    }

    /// The formula's inputs for `entry`, whose symbol is `target` and whose
    /// call may use stub `stub`; `None` if the symbol has no address.
    #[inline(always)]
    fn inputs(&self, entry: &Rela, target: &SymbolTarget, stub: u32) -> Option<FixupInputs> {
        Some(FixupInputs {
            symbol: target.address()?,
            addend: entry.r_addend,
            place: self.target.wrapping_add(entry.r_offset),
            got: self.got,
            got_slot: target.got_slot(),
            stub: slot_address(self.stubs, self.stub_size, stub),
            symbol_size: 0,
        })
    }

    /// `inputs` with Z, the symbol's size, which only a few types read.
    fn sized(&self, entry: &Rela, inputs: &FixupInputs) -> FixupInputs {
        FixupInputs {
            symbol_size: self
                .object
                .symbols
                .get(entry.r_sym())
                .map_or(0, |symbol| symbol.size),
            ..*inputs
        }
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
