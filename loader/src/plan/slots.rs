//! GOT slots, stubs and relaxations: what each relocation entry needs,
//! counted exactly and assigned once per symbol.

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::Rela;
use crate::arch::{
    aarch64, absolute_calls_need_stub, stub_addend, x86_64, Machine, Needs, RelocationProblem,
    RelocationType,
};
use crate::error::{ErrorKind, LoadError};
use crate::names::{NameMap, NAME_HASHER};
use crate::object::{relocation_error, Object, RelocationSection};
use crate::plan::Binding;

/// GOT slots a pending import's context takes after the GOT's own slots:
/// the namespace, then the address of the unbound path.
pub(crate) const PENDING_CONTEXT_SLOTS: u64 = 2;

pub(crate) struct Slots {
    pub(crate) relaxed: EntryBits,
    /// Pending symbols some entry reaches other than through a slot: they
    /// cannot wait, so they are unresolved.
    pub(crate) unpendable: Vec<usize>,
    /// The pending imports, by symbol index.
    pub(crate) pending: Vec<usize>,
    pub(crate) got_slot: Vec<Option<u32>>,
    pub(crate) stub_slot: NameMap<(usize, i64), u32>,
    pub(crate) got_count: u32,
    pub(crate) stub_count: u32,
    pub(crate) counts: Vec<(RelocationType, u64)>,
}

#[inline]
pub(crate) fn assign_slots(
    object: &Object<'_>,
    loaded: &[bool],
    bindings: &[Binding],
    pending: &[bool],
) -> Result<Slots, LoadError> {
    let symbol_count = object.symbols.len();
    let entry_count = object
        .relocations
        .iter()
        .map(|relocations| relocations.len())
        .fold(0usize, usize::saturating_add);
    let mut slots = Slots {
        relaxed: EntryBits::zeroed(entry_count),
        unpendable: Vec::new(),
        pending: Vec::new(),
        got_slot: vec![None; symbol_count],
        stub_slot: NameMap::with_hasher(NAME_HASHER),
        got_count: 0,
        stub_count: 0,
        counts: Vec::new(),
    };
    // What each entry needs of its symbol, worked out once per symbol.
    let classes: Vec<u8> = bindings
        .iter()
        .zip(pending.iter().copied().chain(core::iter::repeat(false)))
        .map(|(binding, pending)| match pending {
            // Only slots may reach it: every other entry fails the class.
            true => NeedBits::GOT_SLOT | NeedBits::STUB | NeedBits::PENDING,
            false => symbol_needs(object.machine, *binding),
        })
        .collect();
    let mut counts = TypeCounts::new(object.machine);
    // `relaxed` has one bit per entry of every section, in order.
    let mut next_entry = 0usize;
    for relocations in &object.relocations {
        let first = next_entry;
        next_entry = next_entry.saturating_add(relocations.len());
        if !loaded.get(relocations.target).copied().unwrap_or(false) {
            continue;
        }
        let data = object
            .sections
            .get(relocations.target)
            .and_then(|section| section.data)
            .unwrap_or_default();
        // One loop per machine, so that neither tests the machine per entry.
        match object.machine {
            Machine::X86_64 => {
                scan_entries::<false>(relocations, first, data, &classes, &mut counts, &mut slots)
            }
            Machine::AArch64 => {
                scan_entries::<true>(relocations, first, data, &classes, &mut counts, &mut slots)
            }
        }
        .map_err(|(entry, problem)| {
            relocation_error(object, relocations.target, &entry, problem)
        })?;
    }
    slots.counts = counts.into_list();
    if !slots.unpendable.is_empty() {
        let mut names: Vec<alloc::boxed::Box<str>> = slots
            .unpendable
            .iter()
            .map(|index| object.symbol_name(*index))
            .collect();
        names.sort_unstable();
        names.dedup();
        return Err(object.error(ErrorKind::Unresolved { names }));
    }
    for (index, binding) in bindings.iter().enumerate() {
        if *binding == Binding::DsoHandle {
            claim(&mut slots.got_slot, &mut slots.got_count, index);
        }
    }
    // Every pending import gets a GOT slot, the one binding writes, whether
    // or not an entry loads it.
    for (index, _) in pending.iter().enumerate().filter(|(_, pending)| **pending) {
        claim(&mut slots.got_slot, &mut slots.got_count, index);
        slots.pending.push(index);
    }
    Ok(slots)
}

/// Counts the entries of one relocation section, records which are relaxed
/// and reserves the GOT slots and stubs they need; the failing entry and
/// why, if one cannot be applied. Not inlined into [`plan`], so that this
/// loop has the registers to itself.
#[inline(never)]
pub(crate) fn scan_entries<const AARCH64: bool>(
    relocations: &RelocationSection<'_>,
    first: usize,
    data: &[u8],
    classes: &[u8],
    counts: &mut TypeCounts,
    slots: &mut Slots,
) -> Result<(), (Rela, RelocationProblem)> {
    let machine = if AARCH64 {
        Machine::AArch64
    } else {
        Machine::X86_64
    };
    for (position, entry) in relocations.entries().enumerate() {
        // What the type needs, narrowed to what its symbol calls for.
        let needs = counts.count_for(machine, entry.r_type);
        let applies = needs & classes.get(entry.r_sym()).copied().unwrap_or(0);
        // Nearly every entry: a call or reference that needs nothing more.
        if applies == NeedBits::SUPPORTED {
            continue;
        }
        let pending = classes.get(entry.r_sym()).copied().unwrap_or(0) & NeedBits::PENDING != 0;
        // A pending symbol reached other than through a slot cannot wait.
        if applies == 0 && pending && needs != 0 {
            if entry.r_type != 0 {
                slots.unpendable.push(entry.r_sym());
            }
            continue;
        }
        // A bad type or symbol index leaves nothing.
        if applies == 0 {
            let problem = match needs {
                0 => RelocationProblem::Unsupported,
                _ => RelocationProblem::BadSymbol,
            };
            return Err((entry, problem));
        }
        // Only a load of a symbol placed here reads the instruction's bytes:
        // the reads, not the branches, were the cost when every entry made
        // them (criterion, `phase-large_nopic/plan`: 164 µs, now 116 µs).
        let relaxed = !AARCH64 && applies & NeedBits::RELAXABLE != 0 && relaxes(&entry, data);
        if relaxed {
            slots.relaxed.set(first.saturating_add(position));
        }
        // A relaxed load needs no slot: clear that bit.
        let wants = applies & (NeedBits::GOT_SLOT | NeedBits::STUB) & !(u8::from(relaxed) << 1);
        if pending && !may_wait::<AARCH64>(&entry, data, wants) {
            slots.unpendable.push(entry.r_sym());
            continue;
        }
        if wants != 0 {
            slots.reserve(
                machine,
                &entry,
                wants & NeedBits::GOT_SLOT != 0,
                wants & NeedBits::STUB != 0,
            );
        }
    }
    Ok(())
}

/// Whether an entry of a pending import that wants `wants` (a stub, a GOT
/// slot) may wait: the machine's `may_wait`.
#[inline]
pub(crate) fn may_wait<const AARCH64: bool>(entry: &Rela, data: &[u8], wants: u8) -> bool {
    let wants_stub = wants & NeedBits::STUB != 0;
    if AARCH64 {
        aarch64::may_wait(wants_stub, entry.r_addend, data, entry.r_offset)
    } else {
        x86_64::may_wait(wants_stub, entry.r_addend, data, entry.r_offset)
    }
}

impl Slots {
    /// Gives `entry`'s symbol a GOT slot and its call a stub, as wanted,
    /// unless they have them.
    pub(crate) fn reserve(
        &mut self,
        machine: Machine,
        entry: &Rela,
        wants_slot: bool,
        wants_stub: bool,
    ) {
        if wants_slot {
            claim(&mut self.got_slot, &mut self.got_count, entry.r_sym());
        }
        if wants_stub {
            let key = (entry.r_sym(), stub_addend(machine, entry.r_addend));
            let next = self.stub_count;
            if *self.stub_slot.entry(key).or_insert(next) == next {
                self.stub_count = self.stub_count.saturating_add(1);
            }
        }
    }
}

/// What the entries that name a symbol bound as `binding` may need, as
/// [`NeedBits`] to be ANDed with an entry type's: every symbol can take a
/// GOT slot, a load of one placed in the module (see
/// [`Binding::is_placed_here`]) can be relaxed, and a call to one that may
/// be out of reach may need a stub or veneer.
pub(crate) fn symbol_needs(machine: Machine, binding: Binding) -> u8 {
    let bit = |set: bool, bit: u8| if set { bit } else { 0 };
    NeedBits::SUPPORTED
        | NeedBits::GOT_SLOT
        | bit(binding.is_placed_here(), NeedBits::RELAXABLE)
        | bit(may_be_out_of_reach(machine, binding), NeedBits::STUB)
}

/// Relocations counted by type, in a fixed table: one slot per type number
/// a machine supports (x86-64 numbers them from 0, AArch64 from 256).
pub(crate) struct TypeCounts {
    pub(crate) machine: Machine,
    /// One more than there are slots: the last counts types without one.
    pub(crate) counts: [u64; TYPE_SLOTS + 1],
    /// What each slot's type needs, as [`NeedBits`]; 0 for types the
    /// machine lacks, and in the last slot.
    pub(crate) needs: [u8; TYPE_SLOTS + 1],
}

pub(crate) const TYPE_SLOTS: usize = 128;

/// [`TypeCounts::needs_table`] of each machine.
const X86_64_NEEDS: [u8; TYPE_SLOTS + 1] = TypeCounts::needs_table(Machine::X86_64);
const AARCH64_NEEDS: [u8; TYPE_SLOTS + 1] = TypeCounts::needs_table(Machine::AArch64);

/// [`Needs`] as bits, so that one table byte answers for an entry.
pub(crate) struct NeedBits;

impl NeedBits {
    pub(crate) const SUPPORTED: u8 = 1;
    pub(crate) const GOT_SLOT: u8 = 2;
    pub(crate) const STUB: u8 = 4;
    pub(crate) const RELAXABLE: u8 = 8;
    /// On a symbol's class only: the symbol is a pending import.
    pub(crate) const PENDING: u8 = 16;

    pub(crate) const fn of(needs: Option<Needs>) -> u8 {
        const fn bit(set: bool, bit: u8) -> u8 {
            if set {
                bit
            } else {
                0
            }
        }
        match needs {
            Some(needs) => {
                Self::SUPPORTED
                    | bit(needs.got_slot, Self::GOT_SLOT)
                    | bit(needs.stub, Self::STUB)
                    | bit(needs.relaxable, Self::RELAXABLE)
            }
            None => 0,
        }
    }
}

impl TypeCounts {
    /// An empty count, with what each of `machine`'s types needs looked up
    /// once for all entries.
    pub(crate) fn new(machine: Machine) -> Self {
        let needs = match machine {
            Machine::X86_64 => X86_64_NEEDS,
            Machine::AArch64 => AARCH64_NEEDS,
        };
        Self {
            machine,
            counts: [0; TYPE_SLOTS + 1],
            needs,
        }
    }

    /// What each of `machine`'s types needs, by slot, as [`NeedBits`]: the
    /// machine's `needs`, worked out once, when the loader is compiled.
    const fn needs_table(machine: Machine) -> [u8; TYPE_SLOTS + 1] {
        let mut table = [0; TYPE_SLOTS + 1];
        let mut slot = 0;
        while slot < TYPE_SLOTS {
            let r_type = Self::r_type(machine, slot);
            // Slots no type number maps to stay unsupported.
            if let Some(mapped) = Self::slot(machine, r_type) {
                if mapped == slot {
                    // Evaluated at compile time: an index out of range
                    // would fail the build, not a load.
                    #[allow(clippy::indexing_slicing)]
                    {
                        table[slot] = NeedBits::of(crate::arch::needs(machine, r_type));
                    }
                }
            }
            slot = slot.wrapping_add(1);
        }
        table
    }

    /// [`Self::count_for`] with the table's machine.
    #[cfg(test)]
    pub(crate) fn count(&mut self, r_type: u32) -> u8 {
        self.count_for(self.machine, r_type)
    }

    /// Counts one entry of type `r_type` and returns its [`NeedBits`]: 0,
    /// uncounted, if the machine does not support the type. `machine` must
    /// be the table's; a caller that knows it at compile time passes it, so
    /// that the machine is not tested per entry.
    #[inline(always)]
    pub(crate) fn count_for(&mut self, machine: Machine, r_type: u32) -> u8 {
        // Types without a slot share the last, whose needs are 0. Counting
        // unsupported types too, instead of testing first, keeps the loops
        // that call this free of branches; the list leaves them out.
        let slot = Self::slot(machine, r_type).unwrap_or(TYPE_SLOTS);
        if let Some(count) = self.counts.get_mut(slot) {
            // At most one per entry of a file: no overflow.
            *count = count.wrapping_add(1);
        }
        self.needs.get(slot).copied().unwrap_or(0)
    }

    /// [`Self::count`] as [`Needs`], or `None` for an unsupported type.
    #[cfg(test)]
    pub(crate) fn tally(&mut self, r_type: u32) -> Option<Needs> {
        let bits = self.count(r_type);
        (bits != 0).then_some(Needs {
            got_slot: bits & NeedBits::GOT_SLOT != 0,
            stub: bits & NeedBits::STUB != 0,
            relaxable: bits & NeedBits::RELAXABLE != 0,
        })
    }

    /// The table slot of `r_type`, for types a machine may support.
    #[inline(always)]
    pub(crate) const fn slot(machine: Machine, r_type: u32) -> Option<usize> {
        let slot = match machine {
            Machine::X86_64 => r_type,
            // R_AARCH64_NONE is 0; the ABI's other types start at 256.
            Machine::AArch64 if r_type == 0 => 0,
            Machine::AArch64 => match r_type.checked_sub(256 - 64) {
                Some(slot) if r_type >= 256 => slot,
                _ => return None,
            },
        };
        // Slot numbers are below TYPE_SLOTS, which fits any usize.
        if (slot as usize) < TYPE_SLOTS {
            Some(slot as usize)
        } else {
            None
        }
    }

    /// The type number slot `slot` stands for.
    pub(crate) const fn r_type(machine: Machine, slot: usize) -> u32 {
        let slot = slot as u32;
        match machine {
            Machine::X86_64 => slot,
            Machine::AArch64 if slot == 0 => 0,
            Machine::AArch64 => slot.saturating_add(256).saturating_sub(64),
        }
    }

    /// The non-zero counts by type, in type order.
    pub(crate) fn into_list(self) -> Vec<(RelocationType, u64)> {
        let machine = self.machine;
        let machine_number = machine.e_machine();
        self.counts
            .iter()
            .zip(self.needs)
            .enumerate()
            .filter(|(_, (count, needs))| **count > 0 && *needs != 0)
            .map(|(slot, (count, _))| {
                let raw = Self::r_type(machine, slot);
                (
                    RelocationType {
                        machine: machine_number,
                        raw,
                    },
                    *count,
                )
            })
            .collect()
    }
}

/// Whether a call to a symbol bound this way may land out of direct reach.
/// Symbols placed in the module are always in reach; absolute ones as the
/// machine says.
pub(crate) fn may_be_out_of_reach(machine: Machine, binding: Binding) -> bool {
    match binding {
        Binding::External | Binding::Yielded { .. } => true,
        Binding::Absolute(_) => absolute_calls_need_stub(machine),
        _ => false,
    }
}

/// One bit per relocation entry, all clear until set.
pub(crate) struct EntryBits {
    pub(crate) words: Vec<u64>,
}

impl EntryBits {
    pub(crate) fn zeroed(entries: usize) -> Self {
        Self {
            words: alloc::vec![0; entries.div_ceil(64)],
        }
    }

    /// Sets bit `index`; an index past the end is ignored.
    #[inline]
    pub(crate) fn set(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Whether any of the `count` bits from `start` is set.
    #[inline]
    pub fn any_in(&self, start: usize, count: usize) -> bool {
        let end = start
            .saturating_add(count)
            .min(self.words.len().saturating_mul(64));
        if start >= end {
            return false;
        }
        // The last bit in the range: `end` is past `start`, so at least 1.
        let end_bit = end.wrapping_sub(1);
        // Whole words but the first and the last, which are masked to the
        // range's bits.
        let (first, last) = (start / 64, end_bit / 64);
        let edge = |at: usize, mask: u64| self.words.get(at).is_some_and(|word| word & mask != 0);
        let low = !mask_below(start % 64);
        let high = mask_below((end_bit % 64).wrapping_add(1));
        if first == last {
            return edge(first, low & high);
        }
        let inner = self
            .words
            .get(first.wrapping_add(1)..last)
            .unwrap_or_default();
        edge(first, low) || edge(last, high) || inner.iter().any(|word| *word != 0)
    }

    /// Reads the bits in order from bit `start`, a word at a time.
    #[inline]
    pub fn cursor(&self, start: usize) -> BitCursor<'_> {
        BitCursor {
            word: self
                .words
                .get(start / 64)
                .map_or(0, |word| word >> (start % 64)),
            words: &self.words,
            next: start,
        }
    }
}

/// The low `bits` bits set (`bits` at most 64).
#[inline]
pub(crate) fn mask_below(bits: usize) -> u64 {
    1u64.checked_shl(bits as u32)
        .map_or(u64::MAX, |bit| bit.wrapping_sub(1))
}

/// [`EntryBits`] read in order: one shift an entry, and one load a word,
/// where looking each bit up would cost a bounds check and a variable shift.
pub(crate) struct BitCursor<'b> {
    pub(crate) words: &'b [u64],
    /// The rest of the current word, its next bit lowest.
    pub(crate) word: u64,
    /// The index of the next bit.
    pub(crate) next: usize,
}

impl BitCursor<'_> {
    /// The next bit; `false` past the end.
    #[inline(always)]
    pub fn next_bit(&mut self) -> bool {
        if self.next.is_multiple_of(64) {
            self.word = self.words.get(self.next / 64).copied().unwrap_or(0);
        }
        let bit = self.word & 1 != 0;
        self.word >>= 1;
        self.next = self.next.wrapping_add(1);
        bit
    }
}

/// Whether a relaxable GOT load (x86-64 `GOTPCRELX`) becomes `lea` of the
/// symbol itself, judged from the file's bytes (`data`, the section as in the
/// file), which no relocation changes. Planning asks, and records the
/// answer for relocation in [`Layout::relaxed`]. Only the plain
/// `mov sym@GOTPCREL(%rip)` (addend -4) loads the slot itself; another addend
/// reads other bytes, which `lea` cannot reproduce. The caller has checked
/// that the symbol is placed in the module, so in reach.
#[inline]
pub(crate) fn relaxes(entry: &Rela, data: &[u8]) -> bool {
    // The opcode and ModRM bytes before the field, as one little-endian
    // word; an offset below 2 wraps to a start `get` refuses.
    let offset = usize::try_from(entry.r_offset).unwrap_or(usize::MAX);
    let pair = data
        .get(offset.wrapping_sub(2)..)
        .and_then(<[u8]>::first_chunk::<2>)
        .copied()
        .unwrap_or_default();
    // `&`, not `&&`: see `x86_64::is_relaxable_load`.
    (entry.r_addend == -4) & x86_64::is_relaxable_pair(pair)
}

pub(crate) fn claim(slots: &mut [Option<u32>], count: &mut u32, symbol: usize) {
    if let Some(slot @ None) = slots.get_mut(symbol) {
        *slot = Some(*count);
        *count = count.saturating_add(1);
    }
}
