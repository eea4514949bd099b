//! Pending imports' slots: the contexts after the GOT's own slots and the
//! lazy entries after the stubs, laid out by the plan and written here when
//! the module is relocated. The namespace binds them later
//! ([`crate::Loader::late_binding`]).

use alloc::vec::Vec;

use crate::arch::Machine;
use crate::arch::RelocationProblem;
use crate::arch::{aarch64, write_field, x86_64, Range, SlotSizes};
use crate::memory::LayoutBytes;
use crate::namespace::late::PendingImport;
use crate::object::Object;
use crate::plan::{Layout, Placement, Plan, PENDING_CONTEXT_SLOTS};

/// Where a module's pending-import areas are, at their target addresses.
pub(crate) struct LazyAreas {
    machine: Machine,
    /// The target address of the first context.
    contexts: u64,
    /// The target address of the first lazy entry.
    entries: u64,
    got: u64,
    stubs: u64,
    /// Layout offsets of the first context and the first lazy entry.
    context_offset: u64,
    entry_offset: u64,
    sizes: SlotSizes,
}

impl LazyAreas {
    /// The areas of a module planned as `plan` and `layout`, whose GOT and
    /// stubs run at `got` and `stubs`.
    pub fn of(object: &Object<'_>, plan: &Plan, layout: &Layout<'_>, got: u64, stubs: u64) -> Self {
        let sizes = SlotSizes::of(object.machine);
        let own_slots = u64::from(plan.got_slots()).wrapping_mul(sizes.got_slot);
        let own_stubs = u64::from(plan.stub_slots()).wrapping_mul(sizes.stub);
        Self {
            machine: object.machine,
            contexts: got.wrapping_add(own_slots),
            entries: stubs.wrapping_add(own_stubs),
            got,
            stubs,
            context_offset: layout.got.offset.wrapping_add(own_slots),
            entry_offset: layout.stubs.offset.wrapping_add(own_stubs),
            sizes,
        }
    }

    /// The target address of pending import `position`'s context.
    fn context(&self, position: u64) -> u64 {
        let size = PENDING_CONTEXT_SLOTS.wrapping_mul(self.sizes.got_slot);
        self.contexts.wrapping_add(position.wrapping_mul(size))
    }

    /// The target address of pending import `position`'s lazy entry.
    fn entry(&self, position: u64) -> u64 {
        self.entries
            .wrapping_add(position.wrapping_mul(self.sizes.lazy_entry))
    }

    /// Makes S of each unbound pending import (`unbound`: symbol indices in
    /// ascending order) its stub (so that calls land on the stub, never go
    /// around it) or, without one, its lazy entry.
    pub fn point_unbound_at_slots(
        &self,
        values: &mut [Option<u64>],
        layout: &Layout<'_>,
        unbound: &[usize],
    ) {
        for (position, &symbol) in (0u64..).zip(&layout.pending) {
            if unbound.binary_search(&symbol).is_err() {
                continue;
            }
            let stub = layout
                .stub_slot
                .get(&(symbol, 0))
                .map(|slot| self.slot_target(self.stubs, self.sizes.stub, *slot));
            if let Some(value) = values.get_mut(symbol) {
                *value = Some(stub.unwrap_or_else(|| self.entry(position)));
            }
        }
    }

    fn slot_target(&self, base: u64, size: u64, slot: u32) -> u64 {
        base.wrapping_add(u64::from(slot).wrapping_mul(size))
    }

    /// Writes every pending import's context and lazy entry, and points the
    /// GOT slot and stub of each unbound one at its lazy entry; returns the
    /// unbound ones for the namespace. `namespace` is the namespace's
    /// address, for the unbound path, and `unbound_path` the path's own
    /// (`None` where modules of this machine cannot run here: their lazy
    /// entries trap instead).
    pub fn fill(
        &self,
        object: &Object<'_>,
        layout: &Layout<'_>,
        unbound: &[usize],
        (namespace, unbound_path): (u64, Option<u64>),
        bytes: &mut LayoutBytes<'_>,
    ) -> Result<Vec<PendingImport>, RelocationProblem> {
        let mut pending = Vec::new();
        for (position, &symbol) in (0u64..).zip(&layout.pending) {
            let context = self.context(position);
            let entry = self.entry(position);
            let unbound_path =
                unbound_path.unwrap_or_else(|| entry.wrapping_add(self.sizes.lazy_trap));
            let context_bytes = area(
                bytes,
                self.context_offset,
                position,
                PENDING_CONTEXT_SLOTS.wrapping_mul(self.sizes.got_slot),
            )?;
            let (namespace_word, path_word) = context_bytes
                .split_at_mut_checked(8)
                .ok_or(RelocationProblem::OutOfBounds)?;
            write_word(namespace_word, namespace)?;
            write_word(path_word, unbound_path)?;
            let entry_bytes = area(bytes, self.entry_offset, position, self.sizes.lazy_entry)?;
            match self.machine {
                Machine::X86_64 => x86_64::write_lazy_entry(entry_bytes, entry, context)?,
                Machine::AArch64 => aarch64::write_lazy_entry(entry_bytes, entry, context)?,
            }
            if unbound.binary_search(&symbol).is_err() {
                continue;
            }
            let slot = layout
                .got_slot
                .get(symbol)
                .copied()
                .flatten()
                .ok_or(RelocationProblem::BadSymbol)?;
            let slot_offset = layout
                .got
                .offset
                .wrapping_add(u64::from(slot).wrapping_mul(self.sizes.got_slot));
            let slot_target = self.slot_target(self.got, self.sizes.got_slot, slot);
            write_word(area(bytes, slot_offset, 0, self.sizes.got_slot)?, entry)?;
            if let Some(&stub) = layout.stub_slot.get(&(symbol, 0)) {
                let stub_target = self.slot_target(self.stubs, self.sizes.stub, stub);
                let stub_offset = layout
                    .stubs
                    .offset
                    .wrapping_add(u64::from(stub).wrapping_mul(self.sizes.stub));
                let stub_bytes = area(bytes, stub_offset, 0, self.sizes.stub)?;
                match self.machine {
                    Machine::X86_64 => {
                        x86_64::write_slot_stub(stub_bytes, stub_target, slot_target)?
                    }
                    Machine::AArch64 => {
                        aarch64::write_slot_veneer(stub_bytes, stub_target, slot_target)?
                    }
                }
            }
            let name = object
                .symbols
                .get(symbol)
                .ok_or(RelocationProblem::BadSymbol)?;
            pending.push(PendingImport {
                name: name.name.into(),
                hash: name.hash,
                slot_offset,
                context,
            });
        }
        Ok(pending)
    }
}

/// The `size` bytes of item `position` of an area at layout `offset`.
fn area<'b>(
    bytes: &'b mut LayoutBytes<'_>,
    offset: u64,
    position: u64,
    size: u64,
) -> Result<&'b mut [u8], RelocationProblem> {
    let placement = Placement {
        kind: crate::kinds::SectionKind::Got,
        offset,
        size,
    };
    placement
        .range(position.wrapping_mul(size), size)
        .and_then(|range| bytes.get_mut(range))
        .ok_or(RelocationProblem::OutOfBounds)
}

fn write_word(bytes: &mut [u8], value: u64) -> Result<(), RelocationProblem> {
    write_field(bytes, 0, 8, i128::from(value), Range::Either)
}
