//! The symbol namespace shared by every module: host exports first, then the
//! exports of each loaded module. It also owns the loaded modules' records, so
//! modules stay loaded however many loaders come and go.
//!
//! Every global name is hashed once per load ([`name_hash`]) and the hash is
//! stored beside it wherever it goes, so no table ever hashes a string again
//! (not on lookup, insert, removal or growth). A module's names live in one
//! allocation ([`ModuleNames`]); the namespace refers to them by slot and
//! definition index instead of holding its own copies.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hashbrown::HashTable;
use spin::Mutex;

use crate::addr::VirtAddr;
use crate::error::{Definer, ErrorKind, UnloadError};
use crate::memory::protection::MemoryProtection;
use crate::memory::ModuleMemory;
use crate::names::{name_hash, NameMap, NAME_HASHER};
use crate::plan::Existing;
use late::PendingImport;

pub(crate) mod late;

pub use late::{ImportStatus, UnboundCall, UnboundHook};

/// Identifies a loaded module within its namespace. Never reused: ids are
/// unique for the namespace's lifetime and ordered by load.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId {
    /// Load order. Compared first, so ids order by load.
    serial: u64,
    /// Where the record lives. Reused after an unload, so a record is the
    /// id's only if its serial matches too.
    slot: u32,
}

impl ModuleId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.serial
    }
}

impl core::fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The slot is an implementation detail; the serial is the identity.
        f.debug_tuple("ModuleId").field(&self.serial).finish()
    }
}

/// An entry of a [`HashIndex`]: knows its (nonzero) hash.
trait Hashed: Copy {
    /// The empty slot; its hash is 0.
    const EMPTY: Self;
    fn hash(&self) -> u64;
}

/// An open-addressing table with linear probing over stored hashes.
///
/// `hashbrown`'s SwissTable costs 50 to 65 instructions per insert or probe
/// here (its group scan and `reserve` check are not inlined without its
/// `inline-more` feature); most lookups in this table end at the first slot,
/// for a dozen. Kept at most half full, so a probe always meets an empty slot
/// and runs are short. Removal shifts the run back instead of leaving
/// tombstones, so lookups never slow down as modules come and go. Growth
/// reinserts by stored hash: no name is hashed again.
struct HashIndex<T> {
    /// Empty, or a power of two long.
    slots: Vec<T>,
    len: usize,
}

/// Where a probe ended.
enum Probe {
    Found(usize),
    /// The empty slot where the entry would go.
    Vacant(usize),
}

impl<T: Hashed> HashIndex<T> {
    const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    fn with_capacity(capacity: usize) -> Self {
        let mut index = Self::new();
        index.reserve(capacity);
        index
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Room for `additional` more entries without growing.
    #[inline]
    fn reserve(&mut self, additional: usize) {
        let wanted = self.len.saturating_add(additional).saturating_mul(2);
        if wanted > self.slots.len() {
            self.grow(wanted);
        }
    }

    /// Moves every entry to a table of at least `wanted` slots.
    #[cold]
    fn grow(&mut self, wanted: usize) {
        let size = wanted
            .max(16)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        let old = core::mem::replace(&mut self.slots, alloc::vec![T::EMPTY; size]);
        for entry in old {
            if entry.hash() != 0 {
                if let Probe::Vacant(at) = self.probe(entry.hash(), |_| false) {
                    if let Some(slot) = self.slots.get_mut(at) {
                        *slot = entry;
                    }
                }
            }
        }
    }

    /// The entry with `hash` that `eq` accepts, else the slot for one.
    /// `Vacant` with no slot behind it only in an empty table.
    fn probe(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Probe {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        // At most half full: the run ends at an empty slot.
        while let Some(slot) = self.slots.get(at) {
            let stored = slot.hash();
            if stored == 0 {
                return Probe::Vacant(at);
            }
            if stored == hash && eq(slot) {
                return Probe::Found(at);
            }
            at = at.wrapping_add(1) & mask;
        }
        Probe::Vacant(at)
    }

    /// Reads the home slot of each of `hashes`, so that the cache misses of
    /// a batch of probes overlap. These reads do not wait on one another,
    /// where each probe's loop waits on its own. Once thousands of modules
    /// have made the table larger than the caches, most probes miss.
    fn warm(&self, hashes: impl Iterator<Item = u64>) {
        // A table this small stays in the second-level cache: nothing to
        // overlap, and the reads would only cost their instructions.
        const FROM_BYTES: usize = 256 * 1024;
        if self.slots.len().saturating_mul(core::mem::size_of::<T>()) < FROM_BYTES {
            return;
        }
        let mask = self.mask();
        let mut seen = 0u64;
        for hash in hashes {
            if let Some(slot) = self.slots.get(hash as usize & mask) {
                seen ^= slot.hash();
            }
        }
        core::hint::black_box(seen);
    }

    fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        match self.probe(hash, eq) {
            Probe::Found(at) => self.slots.get(at),
            Probe::Vacant(_) => None,
        }
    }

    /// Puts `entry` in slot `at`, which `probe` found vacant with no insert
    /// or removal since (and after a `reserve` that made room for it).
    fn fill(&mut self, at: usize, entry: T) {
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = entry;
            self.len = self.len.saturating_add(1);
        }
    }

    /// Adds `entry`, known not to be in the table.
    fn insert(&mut self, entry: T) {
        self.reserve(1);
        if let Probe::Vacant(at) = self.probe(entry.hash(), |_| false) {
            self.fill(at, entry);
        }
    }

    /// Removes the entry in slot `at`, moving later entries of its run back
    /// so that every entry stays reachable from its home slot.
    fn remove_at(&mut self, at: usize) {
        let mask = self.mask();
        let mut hole = at;
        let mut next = at.wrapping_add(1) & mask;
        // Only the hash is read of an entry that stays where it is.
        while let Some(stored) = self.slots.get(next).map(Hashed::hash) {
            if stored == 0 {
                break;
            }
            let home = stored as usize & mask;
            // It may fill the hole if the hole lies between its home and
            // where it is now (cyclically).
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                if let Some(&entry) = self.slots.get(next) {
                    if let Some(slot) = self.slots.get_mut(hole) {
                        *slot = entry;
                    }
                }
                hole = next;
            }
            next = next.wrapping_add(1) & mask;
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = T::EMPTY;
            self.len = self.len.saturating_sub(1);
        }
    }

    /// Removes the entry with `hash` that `eq` accepts, if any.
    fn remove(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) {
        if let Probe::Found(at) = self.probe(hash, eq) {
            self.remove_at(at);
        }
    }
}

/// A module index slot: a name's hash and its definition's position.
#[derive(Clone, Copy, Debug)]
struct Position {
    hash: u64,
    at: u32,
}

impl Hashed for Position {
    const EMPTY: Self = Self { hash: 0, at: 0 };
    fn hash(&self) -> u64 {
        self.hash
    }
}

/// How a module defines a global name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DefinitionKind {
    /// Offered to other modules (default or protected visibility).
    pub exported: bool,
    /// Yields to an earlier definition at publish (weak, unique, `COMMON`).
    pub weak: bool,
    /// Checked against the namespace before relocating: a second strong
    /// definition fails the load early.
    pub strong_here: bool,
}

/// One global definition of a module.
#[derive(Clone, Copy, Debug)]
struct Definition {
    hash: u64,
    /// Its address once placed; until [`NameList::finish`], the symbol's
    /// index in its table.
    address: u64,
    /// The name's bytes in the module's `text`.
    start: u32,
    end: u32,
    kind: DefinitionKind,
    /// Has an address: only placed definitions are indexed and exported.
    placed: bool,
}

/// A module's global definitions while it loads: named and hashed, not yet
/// placed. [`NameList::finish`] gives them addresses.
pub(crate) struct NameList {
    /// The definitions' names, at the offsets they record: a copy of the
    /// stretch of the string table that holds them, or each name copied.
    text: Vec<u8>,
    definitions: Vec<Definition>,
}

/// The refusal of more than 2^32 definitions or bytes of names, which no real
/// object has, so that positions and offsets fit in 32 bits.
const TOO_MANY_NAMES: ErrorKind = ErrorKind::Malformed {
    what: "symbol table (over 2^32 global definitions or bytes of their names)",
};

/// How many definitions a [`NameList`] will hold, how many bytes their
/// names have, and where in the string table the names lie, measured first
/// so that everything is allocated once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameSizes {
    count: usize,
    bytes: usize,
    /// The string table bytes from the first name's start to the last
    /// name's end (empty while `count` is 0).
    start: usize,
    end: usize,
}

impl NameSizes {
    /// No names yet.
    pub const fn new() -> Self {
        Self {
            count: 0,
            bytes: 0,
            start: usize::MAX,
            end: 0,
        }
    }

    /// Counts a name of `len` bytes at offset `at` of the string table.
    #[inline]
    pub fn add(&mut self, at: usize, len: usize) {
        self.count = self.count.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
        self.start = self.start.min(at);
        self.end = self.end.max(at.saturating_add(len));
    }

    /// The stretch of `table` to copy whole, if the names fill most of it:
    /// one copy instead of one per name, for at most twice the bytes.
    fn shared<'t>(&self, table: &'t [u8]) -> Option<&'t [u8]> {
        let span = self.end.checked_sub(self.start)?;
        let limit = self.bytes.saturating_mul(2).saturating_add(64);
        if span > limit {
            return None;
        }
        table.get(self.start..self.end)
    }
}

impl NameList {
    /// The definitions `(symbol index, name's offset in table, name, name's
    /// hash, kind)`, in symbol table order, measured by `sizes` (one
    /// allocation each for the names and the definitions). The hashes are
    /// the ones the symbol table reader computed ([`name_hash`]): no name is
    /// hashed again during the load. Each name must be the bytes of `table`
    /// at its offset, or `table` must not hold the names' stretch: a
    /// [joined](crate::Object::join) object, whose names lie in several
    /// string tables, passes an empty one, and each name is then copied
    /// from its `&str`.
    #[inline(never)]
    pub fn collect<'n>(
        sizes: NameSizes,
        table: &[u8],
        definitions: impl Iterator<Item = (usize, usize, &'n str, u64, DefinitionKind)>,
    ) -> Result<Self, ErrorKind> {
        if u32::try_from(sizes.count).is_err() || u32::try_from(sizes.bytes).is_err() {
            return Err(TOO_MANY_NAMES);
        }
        let mut definitions_out = Vec::with_capacity(sizes.count);
        let text = match sizes.shared(table) {
            Some(shared) => {
                let base = sizes.start;
                for (symbol, at, name, hash, kind) in definitions {
                    // Past 2^32 only if the whole span is, which is refused below.
                    let start = at.wrapping_sub(base) as u32;
                    definitions_out.push(Definition {
                        hash,
                        address: symbol as u64,
                        start,
                        end: start.wrapping_add(name.len() as u32),
                        kind,
                        placed: false,
                    });
                }
                shared.to_vec()
            }
            None => {
                let mut text = Vec::with_capacity(sizes.bytes);
                for (symbol, _, name, hash, kind) in definitions {
                    let start = text.len() as u32;
                    text.extend_from_slice(name.as_bytes());
                    definitions_out.push(Definition {
                        hash,
                        address: symbol as u64,
                        start,
                        end: text.len() as u32,
                        kind,
                        placed: false,
                    });
                }
                text
            }
        };
        // Every offset and position is at most these, so if they fit in 32
        // bits, no conversion above truncated.
        if u32::try_from(text.len()).is_err() || u32::try_from(definitions_out.len()).is_err() {
            return Err(TOO_MANY_NAMES);
        }
        Ok(Self {
            text,
            definitions: definitions_out,
        })
    }

    /// Gives each definition its address (`address_of(symbol index)`); one
    /// without an address is neither indexed nor exported.
    pub fn finish(self, mut address_of: impl FnMut(usize) -> Option<u64>) -> ModuleNames {
        let Self {
            text,
            mut definitions,
        } = self;
        let mut exported = 0usize;
        for definition in &mut definitions {
            if let Some(address) = usize::try_from(definition.address)
                .ok()
                .and_then(&mut address_of)
            {
                definition.address = address;
                definition.placed = true;
                exported = exported.saturating_add(usize::from(definition.kind.exported));
            }
        }
        ModuleNames {
            text: text.into_boxed_slice(),
            definitions: definitions.into_boxed_slice(),
            index: None,
            exported,
        }
    }
}

/// The bytes of `definition`'s name in `text` (empty if the range is bad,
/// which `NameList` never makes).
fn name_bytes<'t>(text: &'t [u8], definition: &Definition) -> &'t [u8] {
    text.get(definition.start as usize..definition.end as usize)
        .unwrap_or_default()
}

/// A loaded module's global definitions: every name in one allocation, and
/// an index by name over the placed ones, exported or not.
pub(crate) struct ModuleNames {
    text: Box<[u8]>,
    definitions: Box<[Definition]>,
    /// Positions in `definitions`; the stored hashes stand in for the names.
    /// Built by the first lookup: most modules are never asked for a name
    /// directly (their exports are found through the namespace's table), so
    /// loading does not pay for it.
    index: Option<HashIndex<Position>>,
    /// How many definitions are exported (and placed).
    exported: usize,
}

impl ModuleNames {
    fn definition(&self, at: u32) -> Option<&Definition> {
        self.definitions.get(at as usize)
    }

    /// The name of definition `at`.
    fn name(&self, at: u32) -> Option<&[u8]> {
        self.definition(at)
            .map(|definition| name_bytes(&self.text, definition))
    }

    /// The first placed definition of `name` (hashed as `hash`).
    fn lookup(&mut self, hash: u64, name: &[u8]) -> Option<&Definition> {
        let Self {
            text,
            definitions,
            index,
            ..
        } = self;
        let index = index.get_or_insert_with(|| index_names(text, definitions));
        let position = index.find(hash, |position| {
            definitions
                .get(position.at as usize)
                .is_some_and(|definition| name_bytes(text, definition) == name)
        })?;
        definitions.get(position.at as usize)
    }
}

/// An index of the placed `definitions` by name: the first of each name.
#[cold]
fn index_names(text: &[u8], definitions: &[Definition]) -> HashIndex<Position> {
    let mut index: HashIndex<Position> = HashIndex::with_capacity(definitions.len());
    for (definition, at) in definitions.iter().zip(0u32..) {
        if !definition.placed {
            continue;
        }
        let name = name_bytes(text, definition);
        let probe = index.probe(definition.hash, |position| {
            definitions
                .get(position.at as usize)
                .is_some_and(|other| name_bytes(text, other) == name)
        });
        if let Probe::Vacant(slot) = probe {
            index.fill(
                slot,
                Position {
                    hash: definition.hash,
                    at,
                },
            );
        }
    }
    index
}

/// Who provides a name in the export table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Position in `State::host`.
    Host(u32),
    /// Definition `definition` of the module in `slot`.
    Module { slot: u32, definition: u32 },
}

/// A name's current definition. Host exports and module exports share one
/// table, so resolving a name is one probe.
///
/// Sixteen bytes: with thousands of modules the table outgrows the caches,
/// and every probe and every doubling costs in proportion to its bytes. The
/// address is not kept here: a lookup that finds the entry has just read
/// its definition to compare the name, and the address sits beside it.
#[derive(Clone, Copy, Debug)]
struct Export {
    hash: u64,
    /// [`Export::HOST`], or the module's slot, with [`Export::WEAK`].
    owner: u32,
    /// The host name's position, or the module's definition.
    at: u32,
}

impl Hashed for Export {
    const EMPTY: Self = Self {
        hash: 0,
        owner: 0,
        at: 0,
    };
    fn hash(&self) -> u64 {
        self.hash
    }
}

impl Export {
    const HOST: u32 = 1 << 31;
    const WEAK: u32 = 1 << 30;

    fn host(hash: u64, position: u32) -> Self {
        Self {
            hash,
            owner: Self::HOST,
            at: position,
        }
    }

    /// `slot` is below [`MAX_MODULE_SLOTS`], so clear of the flag bits.
    fn module(hash: u64, slot: u32, definition: u32, weak: bool) -> Self {
        Self {
            hash,
            owner: slot | if weak { Self::WEAK } else { 0 },
            at: definition,
        }
    }

    fn owner(&self) -> Owner {
        if self.owner & Self::HOST != 0 {
            Owner::Host(self.at)
        } else {
            Owner::Module {
                slot: self.owner & !Self::WEAK,
                definition: self.at,
            }
        }
    }

    /// A weak module definition, which a strong one may still replace.
    fn weak(&self) -> bool {
        self.owner & (Self::HOST | Self::WEAK) == Self::WEAK
    }

    /// The address it stands for, read from its owner.
    fn address(&self, host: &[HostExport], modules: &Slots) -> Option<u64> {
        match self.owner() {
            Owner::Host(position) => host.get(position as usize).map(|host| host.address),
            Owner::Module { slot, definition } => modules
                .get(slot as usize)?
                .as_ref()?
                .names
                .definition(definition)
                .map(|definition| definition.address),
        }
    }
}

/// Module slots stay below this, clear of [`Export`]'s flag bits: a billion
/// modules at once would need far more memory than any machine has.
const MAX_MODULE_SLOTS: u32 = Export::WEAK;

/// A name the host exports.
struct HostExport {
    name: Box<str>,
    address: u64,
}

/// A definition a module has in the export table.
#[derive(Clone, Copy, Debug)]
struct Exported {
    hash: u64,
    at: u32,
}

/// A definition that lost at publish to one already exported.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    slot: u32,
    definition: u32,
    weak: bool,
}

/// The definitions waiting for one name, in load order. Never empty: its
/// name is its first definition's.
struct Shadowed {
    hash: u64,
    waiting: Vec<Waiting>,
}

pub(crate) struct ModuleRecord {
    name: Box<str>,
    /// The serial of the id the record was published under.
    serial: u64,
    /// Every global definition of the module, by name, exported or not.
    names: ModuleNames,
    /// Definitions this module put into the namespace's export table, with
    /// their hashes: unloading finds each entry without reading the
    /// definitions or their names.
    exported: Vec<Exported>,
    /// Definitions waiting in `shadowed` lists, so unloading visits only
    /// those lists instead of every shadowed name.
    shadowed: Vec<u32>,
    comdats: Vec<Box<str>>,
    dependencies: Vec<ModuleId>,
    /// Loaded modules (and loads in progress) that bind to this one.
    users: usize,
    /// Fini functions in the order they run.
    pub fini: Vec<VirtAddr>,
    /// The imports the module was loaded with pending, and what each is
    /// bound to now.
    pending: Vec<late::Slot>,
    /// Pending imports bound since the module was loaded.
    late_bound: u32,
    /// What binding a pending import changes page permissions with.
    protection: &'static dyn MemoryProtection,
    /// The module's `__dso_handle`, if it refers to one.
    dso_handle: Option<VirtAddr>,
    /// Where its unwind tables are, if the loader kept them.
    unwind_tables: Vec<VirtAddr>,
    /// Held for its `Drop`, which returns the memory to the region; binding
    /// a pending import writes its GOT slot.
    memory: ModuleMemory,
}

impl ModuleRecord {
    /// A module about to be published.
    pub fn new(
        name: Box<str>,
        names: ModuleNames,
        comdats: Vec<Box<str>>,
        fini: Vec<VirtAddr>,
        memory: ModuleMemory,
        protection: &'static dyn MemoryProtection,
    ) -> Self {
        Self {
            name,
            serial: 0,
            names,
            exported: Vec::new(),
            shadowed: Vec::new(),
            comdats,
            dependencies: Vec::new(),
            users: 0,
            fini,
            pending: Vec::new(),
            late_bound: 0,
            protection,
            dso_handle: None,
            unwind_tables: Vec::new(),
            memory,
        }
    }

    /// Sets the imports left pending at load and the module's `__dso_handle`.
    pub fn with_late_parts(
        mut self,
        pending: Vec<PendingImport>,
        dso_handle: Option<VirtAddr>,
    ) -> Self {
        self.pending = pending.into_iter().map(late::Slot::new).collect();
        self.dso_handle = dso_handle;
        self
    }

    /// Sets where the module's unwind tables are.
    pub fn with_unwind_tables(mut self, tables: Vec<VirtAddr>) -> Self {
        self.unwind_tables = tables;
        self
    }
}

/// The loaded modules' records, by slot. Apart from `State` so that its
/// name lookups can be borrowed beside the tables being changed.
type Slots = Vec<Option<ModuleRecord>>;

struct State {
    /// Names of the host exports, by position; they never leave.
    host: Vec<HostExport>,
    /// Every exported name: the host's, then each module's first definition.
    exports: HashIndex<Export>,
    /// Definitions that lost at publish to one already exported, by name, in
    /// load order. When the exporting module unloads, the first strong one
    /// (else the first weak one) takes the name, so a name stays defined for
    /// as long as a loaded module defines it. Only exported names have one.
    shadowed: HashTable<Shadowed>,
    comdats: NameMap<Box<str>, ModuleId>,
    modules: Slots,
    /// Empty slots of `modules`.
    free: Vec<u32>,
    next_serial: u64,
    /// Pending imports nothing defines yet: the modules waiting, by name.
    waiting: BTreeMap<Box<str>, Vec<ModuleId>>,
    /// Every pending import's context (bound or not), and whose it is.
    contexts: BTreeMap<u64, ModuleId>,
    /// Told about calls to pending imports that are still unbound.
    hook: Option<UnboundHook>,
}

/// The symbols every load resolves against, and the loaded modules.
///
/// Resolution order: host exports, then the exports of modules loaded so far
/// (the first definition of a name wins; a second strong one is an error),
/// then the loader's fallback resolver. It can live in a `static`:
///
/// ```
/// static NAMESPACE: modload::Namespace = modload::Namespace::new();
/// NAMESPACE.add_host_export("kernel_print", modload::VirtAddr::new(0x1000)).unwrap();
/// assert_eq!(NAMESPACE.lookup("kernel_print"), Some(modload::VirtAddr::new(0x1000)));
/// ```
pub struct Namespace {
    state: Mutex<State>,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespace {
    /// An empty namespace.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                host: Vec::new(),
                exports: HashIndex::new(),
                shadowed: HashTable::new(),
                comdats: NameMap::with_hasher(NAME_HASHER),
                modules: Vec::new(),
                free: Vec::new(),
                next_serial: 0,
                waiting: BTreeMap::new(),
                contexts: BTreeMap::new(),
                hook: None,
            }),
        }
    }

    /// Adds a host symbol. Refused if the name is already defined.
    pub fn add_host_export(&self, name: &str, address: VirtAddr) -> Result<(), Definer> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let hash = name_hash(name);
        if let Some(export) = find(&state.exports, &state.host, &state.modules, hash, name) {
            return Err(match export.owner() {
                Owner::Host(_) => Definer::Host,
                Owner::Module { slot, .. } => definer(&state.modules, slot),
            });
        }
        // 2^32 host names would need hundreds of GiB of table first.
        let position = u32::try_from(state.host.len()).map_err(|_| Definer::Host)?;
        state.host.push(HostExport {
            name: name.into(),
            address: address.as_u64(),
        });
        state.exports.insert(Export::host(hash, position));
        state.bind_waiters(name, address.as_u64(), None);
        Ok(())
    }

    /// The address `name` resolves to now, from the host or a loaded module.
    pub fn lookup(&self, name: &str) -> Option<VirtAddr> {
        self.state
            .lock()
            .resolve(name_hash(name), name)
            .map(|(address, _)| VirtAddr::new(address))
    }

    /// The loaded modules, by id and name, in load order.
    pub fn modules(&self) -> Vec<(ModuleId, Box<str>)> {
        let state = self.state.lock();
        let mut modules: Vec<_> = state
            .modules
            .iter()
            .zip(0u32..)
            .filter_map(|(record, slot)| {
                let record = record.as_ref()?;
                let id = ModuleId {
                    serial: record.serial,
                    slot,
                };
                Some((id, record.name.clone()))
            })
            .collect();
        modules.sort_unstable_by_key(|(id, _)| *id);
        modules
    }

    /// Runs `f` with a consistent view of the namespace.
    pub(crate) fn view<R>(&self, f: impl FnOnce(&NamespaceView<'_>) -> R) -> R {
        let state = self.state.lock();
        f(&NamespaceView { state: &state })
    }

    /// Resolves each name, pinning every module that provides one so it cannot
    /// be unloaded until the pins are dropped or handed to a module record.
    /// Returns `None` per name nothing defines.
    ///
    /// Each name comes with its [`name_hash`]. `comdats` runs beside `names`:
    /// for a symbol of a COMDAT copy this module discarded, the group's
    /// signature. If the name is not exported (the first copy kept it
    /// hidden), the group's owner answers for it.
    pub(crate) fn resolve_and_pin(
        &self,
        names: &[(&str, u64)],
        comdats: &[Option<&str>],
    ) -> (Vec<Option<u64>>, Pins<'_>) {
        let mut state = self.state.lock();
        state.exports.warm(names.iter().map(|&(_, hash)| hash));
        let mut pinned: Vec<ModuleId> = Vec::new();
        let values = names
            .iter()
            .enumerate()
            .map(|(at, &(name, hash))| {
                let comdat = comdats.get(at).copied().flatten();
                let (address, module) = match state.resolve(hash, name) {
                    Some(found) => found,
                    None => state.comdat_definition(comdat?, hash, name)?,
                };
                if let Some(module) = module {
                    pinned.push(module);
                }
                Some(address)
            })
            .collect();
        pinned.sort_unstable();
        pinned.dedup();
        for id in &pinned {
            if let Some(record) = state.record_mut(*id) {
                record.users = record.users.saturating_add(1);
            }
        }
        (
            values,
            Pins {
                namespace: self,
                modules: pinned,
            },
        )
    }

    /// The first definition of `names` that is checked early (see
    /// [`DefinitionKind::strong_here`]) and that the namespace already has
    /// strongly.
    pub(crate) fn find_duplicate(&self, names: &NameList) -> Option<ErrorKind> {
        let state = self.state.lock();
        let (host, modules) = (&state.host, &state.modules);
        let checked = || {
            names
                .definitions
                .iter()
                .filter(|definition| definition.kind.strong_here)
        };
        state
            .exports
            .warm(checked().map(|definition| definition.hash));
        checked().find_map(|definition| {
            // Most names are new: the probe ends at an empty slot, and
            // the name is read only when a stored hash matches.
            let name = || name_bytes(&names.text, definition);
            let export = state.exports.find(definition.hash, |export| {
                owner_name(host, modules, export.owner()) == Some(name())
            })?;
            let existing = state.conflict(export, name(), None)?;
            Some(duplicate_error(&names.text, definition, existing))
        })
    }

    /// Adds a module and its exports. Fails, changing nothing, if a strong
    /// export collides with an existing strong definition.
    pub(crate) fn publish(
        &self,
        mut record: ModuleRecord,
        pins: Pins<'_>,
    ) -> Result<ModuleId, ErrorKind> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None => {
                let Some(slot) = u32::try_from(state.modules.len())
                    .ok()
                    .filter(|slot| *slot < MAX_MODULE_SLOTS)
                else {
                    // 2^30 modules loaded at once: no memory holds them.
                    drop(guard);
                    drop(record);
                    drop(pins);
                    return Err(ErrorKind::OutOfMemory { size: 0, align: 0 });
                };
                state.modules.push(None);
                slot
            }
        };
        let serial = state.next_serial;
        record.serial = serial;
        // In its slot while linking, so its own names can be compared too.
        if let Some(place) = state.modules.get_mut(slot as usize) {
            *place = Some(record);
        }
        if let Err(duplicate) = state.link(slot) {
            let record = state.modules.get_mut(slot as usize).and_then(Option::take);
            state.free.push(slot);
            // Free the memory and the pins outside the lock.
            drop(guard);
            drop(record);
            drop(pins);
            return Err(duplicate);
        }
        // Ids are never reused; 2^64 loads will not happen.
        state.next_serial = serial.wrapping_add(1);
        let id = ModuleId { serial, slot };
        // Taken here so the pins never drop (and lock) while the lock is held.
        let dependencies = pins.into_modules();
        let State {
            comdats, modules, ..
        } = state;
        if let Some(Some(record)) = modules.get_mut(slot as usize) {
            record
                .comdats
                .retain(|signature| !comdats.contains_key(&**signature));
            for signature in &record.comdats {
                comdats.insert(signature.clone(), id);
            }
            record.dependencies = dependencies;
        }
        state.bind_on_publish(id);
        Ok(id)
    }

    /// The address of a global symbol defined by module `id`.
    pub(crate) fn module_symbol(&self, id: ModuleId, name: &str) -> Option<VirtAddr> {
        let mut state = self.state.lock();
        let definition = state
            .record_mut(id)?
            .names
            .lookup(name_hash(name), name.as_bytes())?;
        Some(VirtAddr::new(definition.address))
    }

    pub(crate) fn module_name(&self, id: ModuleId) -> Option<Box<str>> {
        self.state
            .lock()
            .record(id)
            .map(|record| record.name.clone())
    }

    /// Whether module `id` is loaded.
    pub(crate) fn is_loaded(&self, id: ModuleId) -> bool {
        self.state.lock().record(id).is_some()
    }

    /// Removes module `id` unless another module uses it. The caller runs the
    /// record's fini functions and then drops it, which frees its memory.
    ///
    /// Visits only the module's own names (and the lists they wait in).
    pub(crate) fn remove(&self, id: ModuleId) -> Result<ModuleRecord, UnloadError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let record = state.record(id).ok_or(UnloadError::NotLoaded)?;
        if record.users > 0 {
            return Err(UnloadError::InUse {
                users: state.users_of(id),
            });
        }
        let record = state
            .modules
            .get_mut(id.slot as usize)
            .and_then(Option::take)
            .ok_or(UnloadError::NotLoaded)?;
        unlink(
            &mut state.exports,
            &mut state.shadowed,
            id.slot,
            &record.names,
            &record.exported,
            &record.shadowed,
        );
        // Each name just left: the next definition in line takes it. Only
        // names with a shadowed list have one, so with none (the common
        // case) no name is read.
        if !state.shadowed.is_empty() {
            for exported in &record.exported {
                if let Some(name) = record.names.name(exported.at) {
                    state.promote(exported.hash, name);
                }
            }
        }
        for signature in &record.comdats {
            state.comdats.remove(&**signature);
        }
        state.forget_pending(id, &record);
        state.release(&record.dependencies);
        state.free.push(id.slot);
        Ok(record)
    }
}

/// The export of `name` (hashed as `hash`), if any.
fn find<'t>(
    exports: &'t HashIndex<Export>,
    host: &[HostExport],
    modules: &Slots,
    hash: u64,
    name: impl AsRef<[u8]>,
) -> Option<&'t Export> {
    let name = name.as_ref();
    exports.find(hash, |export| {
        owner_name(host, modules, export.owner()) == Some(name)
    })
}

/// The name an export table entry is for.
fn owner_name<'s>(host: &'s [HostExport], modules: &'s Slots, owner: Owner) -> Option<&'s [u8]> {
    match owner {
        Owner::Host(position) => host.get(position as usize).map(|host| host.name.as_bytes()),
        Owner::Module { slot, definition } => module_name(modules, slot, definition),
    }
}

/// The name of definition `definition` of the module in `slot`.
fn module_name(modules: &Slots, slot: u32, definition: u32) -> Option<&[u8]> {
    modules.get(slot as usize)?.as_ref()?.names.name(definition)
}

/// The shadowed list of `name` (hashed as `hash`), if any.
fn waiting_for<'t>(
    shadowed: &'t HashTable<Shadowed>,
    modules: &Slots,
    hash: u64,
    name: &[u8],
) -> Option<&'t Shadowed> {
    shadowed.find(hash, |list| list_is_for(list, modules, hash, name))
}

fn list_is_for(list: &Shadowed, modules: &Slots, hash: u64, name: &[u8]) -> bool {
    list.hash == hash
        && list
            .waiting
            .first()
            .and_then(|first| module_name(modules, first.slot, first.definition))
            == Some(name)
}

fn definer(modules: &Slots, slot: u32) -> Definer {
    Definer::Module(
        modules
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map_or_else(|| "?".into(), |record| record.name.clone()),
    )
}

fn duplicate_error(text: &[u8], definition: &Definition, existing: Definer) -> ErrorKind {
    // A name came from a `&str`, so it is UTF-8.
    let name = core::str::from_utf8(name_bytes(text, definition)).unwrap_or_default();
    ErrorKind::DuplicateDefinition {
        name: name.into(),
        existing,
    }
}

/// [`State::conflict`], on the tables it reads.
fn conflict(
    shadowed: &HashTable<Shadowed>,
    modules: &Slots,
    export: &Export,
    name: &[u8],
    own: Option<u32>,
) -> Option<Definer> {
    match export.owner() {
        Owner::Host(_) => Some(Definer::Host),
        Owner::Module { slot, .. } if Some(slot) == own => None,
        Owner::Module { slot, .. } if !export.weak() => Some(definer(modules, slot)),
        Owner::Module { .. } => {
            let list = waiting_for(shadowed, modules, export.hash, name)?;
            let strong = list
                .waiting
                .iter()
                .find(|waiting| !waiting.weak && Some(waiting.slot) != own)?;
            Some(definer(modules, strong.slot))
        }
    }
}

/// Definition `at` of the module in `slot` (being linked, its `names`),
/// whose name `export` already has: a strong one that collides fails; else
/// it waits in the name's shadowed list (`Ok(true)`), unless the host has
/// the name, which never leaves (`Ok(false)`). Apart from `link`'s loop,
/// which it would crowd: most names never get here.
#[inline(never)]
fn lose(
    shadowed: &mut HashTable<Shadowed>,
    modules: &Slots,
    export: &Export,
    names: &ModuleNames,
    (slot, at): (u32, u32),
) -> Result<bool, ErrorKind> {
    let Some(definition) = names.definition(at) else {
        return Ok(false);
    };
    let name = name_bytes(&names.text, definition);
    let weak = definition.kind.weak;
    if !weak {
        // Against the namespace as it was: this module's own earlier
        // definitions of the name never collide.
        if let Some(existing) = conflict(shadowed, modules, export, name, Some(slot)) {
            return Err(duplicate_error(&names.text, definition, existing));
        }
    }
    if let Owner::Host(_) = export.owner() {
        return Ok(false); // the host's definitions never leave
    }
    // A definition that lost to an earlier one (a strong one here lost to
    // an earlier weak one): next in line for the name.
    let waiting = Waiting {
        slot,
        definition: at,
        weak,
    };
    let hash = definition.hash;
    shadowed
        .entry(
            hash,
            |list| list_is_for(list, modules, hash, name),
            |list| list.hash,
        )
        .or_insert_with(|| Shadowed {
            hash,
            waiting: Vec::new(),
        })
        .into_mut()
        .waiting
        .push(waiting);
    Ok(true)
}

/// Takes module `slot`'s definitions out of the tables: its exports (each
/// found by identity, so no name is compared) and its places in the
/// shadowed lists of `shadowed_names`.
fn unlink(
    exports: &mut HashIndex<Export>,
    shadowed: &mut HashTable<Shadowed>,
    slot: u32,
    names: &ModuleNames,
    exported: &[Exported],
    shadowed_names: &[u32],
) {
    for at in shadowed_names {
        let Some(definition) = names.definition(*at) else {
            continue;
        };
        let entry = shadowed.find_entry(definition.hash, |list| {
            list.hash == definition.hash && list.waiting.iter().any(|waiting| waiting.slot == slot)
        });
        if let Ok(mut entry) = entry {
            let list = entry.get_mut();
            list.waiting.retain(|waiting| waiting.slot != slot);
            if list.waiting.is_empty() {
                entry.remove();
            }
        }
    }
    exports.warm(exported.iter().map(|exported| exported.hash));
    for exported in exported {
        let owner = Owner::Module {
            slot,
            definition: exported.at,
        };
        exports.remove(exported.hash, |export| export.owner() == owner);
    }
}

impl State {
    /// The record of module `id`, unless it was unloaded (its slot may hold
    /// another module by now).
    fn record(&self, id: ModuleId) -> Option<&ModuleRecord> {
        self.modules
            .get(id.slot as usize)?
            .as_ref()
            .filter(|record| record.serial == id.serial)
    }

    fn record_mut(&mut self, id: ModuleId) -> Option<&mut ModuleRecord> {
        self.modules
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|record| record.serial == id.serial)
    }

    fn id_of(&self, slot: u32) -> Option<ModuleId> {
        let record = self.modules.get(slot as usize)?.as_ref()?;
        Some(ModuleId {
            serial: record.serial,
            slot,
        })
    }

    /// The names of the modules that depend on `id`, in load order.
    fn users_of(&self, id: ModuleId) -> Vec<Box<str>> {
        let mut users: Vec<(u64, Box<str>)> = self
            .modules
            .iter()
            .flatten()
            .filter(|other| other.dependencies.contains(&id))
            .map(|other| (other.serial, other.name.clone()))
            .collect();
        users.sort_unstable_by_key(|(serial, _)| *serial);
        users.into_iter().map(|(_, name)| name).collect()
    }

    /// Who `export` makes a strong definition of `name` collide with: the
    /// host, a strong exporter, or a strong definition waiting behind a weak
    /// exporter. The module in slot `own` (being published) never counts.
    fn conflict(&self, export: &Export, name: &[u8], own: Option<u32>) -> Option<Definer> {
        conflict(&self.shadowed, &self.modules, export, name, own)
    }

    /// Puts the exports of the module in `slot` (already in place) into the
    /// tables, one probe per name: the first definition of a name wins, a
    /// later one waits in the name's shadowed list. On a strong duplicate,
    /// takes out what it added and reports the first one, in definition order.
    fn link(&mut self, slot: u32) -> Result<(), ErrorKind> {
        let Some(Some(record)) = self.modules.get(slot as usize) else {
            return Ok(());
        };
        let names = &record.names;
        let count = names.exported;
        self.exports.reserve(count);
        self.exports.warm(
            names
                .definitions
                .iter()
                .filter(|definition| definition.kind.exported && definition.placed)
                .map(|definition| definition.hash),
        );
        let mut exported: Vec<Exported> = Vec::with_capacity(count);
        let mut shadowed: Vec<u32> = Vec::new();
        let mut failure = None;
        let (host, modules) = (&self.host, &self.modules);
        let mask = self.exports.mask();
        // `HashIndex::probe` and `fill` by hand, on the slots borrowed once
        // for the whole walk: most names end at an empty slot.
        let slots = self.exports.slots.as_mut_slice();
        'definitions: for (definition, at) in names.definitions.iter().zip(0u32..) {
            if !definition.kind.exported || !definition.placed {
                continue;
            }
            let hash = definition.hash;
            let mut probe = hash as usize & mask;
            let export = loop {
                // Reserved above: the walk meets an empty slot.
                let Some(entry) = slots.get_mut(probe) else {
                    continue 'definitions;
                };
                if entry.hash == 0 {
                    *entry = Export::module(hash, slot, at, definition.kind.weak);
                    exported.push(Exported { hash, at });
                    continue 'definitions;
                }
                // The name is only needed when a stored hash matches: rarely.
                if entry.hash == hash
                    && owner_name(host, modules, entry.owner())
                        == Some(name_bytes(&names.text, definition))
                {
                    break *entry;
                }
                probe = probe.wrapping_add(1) & mask;
            };
            match lose(&mut self.shadowed, modules, &export, names, (slot, at)) {
                Ok(true) => shadowed.push(at),
                Ok(false) => {}
                Err(duplicate) => {
                    failure = Some(duplicate);
                    break;
                }
            }
        }
        self.exports.len = self.exports.len.saturating_add(exported.len());
        if let Some(failure) = failure {
            unlink(
                &mut self.exports,
                &mut self.shadowed,
                slot,
                names,
                &exported,
                &shadowed,
            );
            return Err(failure);
        }
        if let Some(Some(record)) = self.modules.get_mut(slot as usize) {
            record.exported = exported;
            record.shadowed = shadowed;
        }
        Ok(())
    }

    /// Gives `name`, just left by its exporter, to the next module in line.
    fn promote(&mut self, hash: u64, name: &[u8]) {
        let modules = &self.modules;
        let Ok(mut entry) = self
            .shadowed
            .find_entry(hash, |list| list_is_for(list, modules, hash, name))
        else {
            return;
        };
        let list = entry.get_mut();
        let next = list
            .waiting
            .iter()
            .position(|waiting| !waiting.weak)
            .unwrap_or(0);
        if next >= list.waiting.len() {
            return;
        }
        let waiting = list.waiting.remove(next);
        if list.waiting.is_empty() {
            entry.remove();
        }
        if let Some(Some(record)) = self.modules.get_mut(waiting.slot as usize) {
            record.exported.push(Exported {
                hash,
                at: waiting.definition,
            });
            self.exports.insert(Export::module(
                hash,
                waiting.slot,
                waiting.definition,
                waiting.weak,
            ));
        }
    }

    fn resolve(&self, hash: u64, name: &str) -> Option<(u64, Option<ModuleId>)> {
        let export = find(&self.exports, &self.host, &self.modules, hash, name)?;
        let module = match export.owner() {
            Owner::Host(_) => None,
            Owner::Module { slot, .. } => Some(self.id_of(slot)?),
        };
        Some((export.address(&self.host, &self.modules)?, module))
    }

    /// `name` as defined by the module that owns COMDAT group `signature`,
    /// exported or not (its `names` hold every global definition).
    fn comdat_definition(
        &mut self,
        signature: &str,
        hash: u64,
        name: &str,
    ) -> Option<(u64, Option<ModuleId>)> {
        let owner = *self.comdats.get(signature)?;
        let definition = self
            .record_mut(owner)?
            .names
            .lookup(hash, name.as_bytes())?;
        Some((definition.address, Some(owner)))
    }

    fn release(&mut self, modules: &[ModuleId]) {
        for id in modules {
            if let Some(record) = self.record_mut(*id) {
                record.users = record.users.saturating_sub(1);
            }
        }
    }
}

/// A read-only view used while planning.
pub(crate) struct NamespaceView<'s> {
    state: &'s State,
}

impl Existing for NamespaceView<'_> {
    fn is_defined(&self, name: &str) -> bool {
        let state = self.state;
        find(
            &state.exports,
            &state.host,
            &state.modules,
            name_hash(name),
            name,
        )
        .is_some()
    }

    fn has_comdat(&self, signature: &str) -> bool {
        self.state.comdats.contains_key(signature)
    }
}

/// Modules a load in progress binds to. While pinned they cannot be unloaded;
/// dropping the pins (a failed or abandoned load) releases them.
pub(crate) struct Pins<'n> {
    namespace: &'n Namespace,
    modules: Vec<ModuleId>,
}

impl Pins<'_> {
    fn into_modules(mut self) -> Vec<ModuleId> {
        core::mem::take(&mut self.modules)
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        if !self.modules.is_empty() {
            self.namespace.state.lock().release(&self.modules);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        name_bytes, name_hash, DefinitionKind, Export, HashIndex, Hashed, NameList, NameSizes,
        Owner, Probe, MAX_MODULE_SLOTS,
    };
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;

    /// The packed owner reads back as it went in, at the edges of each field.
    #[test]
    fn export_entries_keep_owner_and_weakness() {
        assert_eq!(core::mem::size_of::<Export>(), 16);
        for position in [0, 1, u32::MAX] {
            let export = Export::host(7, position);
            assert_eq!(export.owner(), Owner::Host(position));
            assert!(!export.weak());
        }
        for slot in [0, 1, MAX_MODULE_SLOTS - 1] {
            for definition in [0, 5, u32::MAX] {
                for weak in [false, true] {
                    let export = Export::module(9, slot, definition, weak);
                    assert_eq!(export.owner(), Owner::Module { slot, definition });
                    assert_eq!(export.weak(), weak);
                    assert_eq!(export.hash(), 9);
                }
            }
        }
    }

    /// Names that differ in a digit or two still spread over a table kept
    /// half full: linear probing stays short only if the low bits (which
    /// choose the slot) of `name_hash` are well mixed.
    #[test]
    fn name_hashes_spread_over_slots() {
        for prefix in ["f", "g", "mod_000123_f", "_ZN4core3fmt9Formatter3pad17h"] {
            let mut index: HashIndex<Item> = HashIndex::new();
            let count = 20_000u32;
            index.reserve(count as usize);
            let mut steps = 0usize;
            for key in 0..count {
                let hash = name_hash(&alloc::format!("{prefix}{key}"));
                let mut at = hash as usize & index.mask();
                while index.slots[at].hash != 0 {
                    steps += 1;
                    at = (at + 1) & index.mask();
                }
                index.fill(at, Item { hash, key });
            }
            // Uniform hashing averages about 0.15 extra steps an insert as
            // the table fills to 30%.
            assert!(
                steps < count as usize / 4,
                "{prefix}: {steps} extra probe steps"
            );
        }
    }

    /// The names of `table` at `offsets`, collected: whether the names fill
    /// the stretch of the table they lie in (one copy of it) or not (one
    /// copy each), every definition gets its own name back.
    #[test]
    fn collected_names_read_back() {
        let kind = DefinitionKind {
            exported: true,
            weak: false,
            strong_here: true,
        };
        let dense = b"\0f1\0g22\0\xffh\0\0\xc3\xa9333\0".as_slice();
        let sparse = [
            b"\0f1\0g22\0".as_slice(),
            &[b'x'; 300],
            b"\0\0\xc3\xa9333\0",
        ]
        .concat();
        let cases: [(&[u8], &[usize]); 3] = [
            (dense, &[1, 4, 12, 1, 11]),
            (&sparse, &[1, 4, 310, 1, 309]),
            (dense, &[]),
        ];
        for (table, offsets) in cases {
            let names: Vec<&str> = offsets
                .iter()
                .map(|&at| {
                    let rest = &table[at..];
                    let len = rest.iter().position(|byte| *byte == 0).unwrap();
                    core::str::from_utf8(&rest[..len]).unwrap()
                })
                .collect();
            let mut sizes = NameSizes::new();
            for (at, name) in offsets.iter().zip(&names) {
                sizes.add(*at, name.len());
            }
            assert_eq!(
                sizes.shared(table).is_some(),
                table.len() < 100 && !offsets.is_empty()
            );
            let definitions = offsets
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(symbol, (at, name))| (symbol, *at, *name, name_hash(name), kind));
            let list = NameList::collect(sizes, table, definitions).unwrap();
            assert_eq!(list.definitions.len(), names.len());
            for (definition, name) in list.definitions.iter().zip(&names) {
                assert_eq!(name_bytes(&list.text, definition), name.as_bytes());
                assert_eq!(definition.hash, name_hash(name));
            }
        }
    }

    /// Names from several string tables (a joined object's), collected
    /// with an empty table: each comes from its own `&str`, whatever
    /// offsets their tables gave them.
    #[test]
    fn names_without_a_table_come_from_each_name() {
        let kind = DefinitionKind {
            exported: true,
            weak: false,
            strong_here: true,
        };
        let names = [
            ("first", 1usize),
            ("second", 1),
            ("", 0),
            ("é3", 7),
            ("x", 0),
        ];
        let mut sizes = NameSizes::new();
        for (name, at) in names {
            sizes.add(at, name.len());
        }
        let definitions = names
            .iter()
            .enumerate()
            .map(|(symbol, (name, at))| (symbol, *at, *name, name_hash(name), kind));
        let list = NameList::collect(sizes, &[], definitions).unwrap();
        assert_eq!(list.definitions.len(), names.len());
        for (definition, (name, _)) in list.definitions.iter().zip(names) {
            assert_eq!(name_bytes(&list.text, definition), name.as_bytes());
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct Item {
        hash: u64,
        key: u32,
    }

    impl Hashed for Item {
        const EMPTY: Self = Self { hash: 0, key: 0 };
        fn hash(&self) -> u64 {
            self.hash
        }
    }

    /// Few distinct hashes, so runs are long and full of equal hashes, and
    /// some homes are the last slots, so runs wrap around.
    fn hash(key: u32) -> u64 {
        match key % 3 {
            0 => u64::MAX - u64::from(key % 4),
            _ => u64::from(key % 11).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63,
        }
    }

    fn contains(index: &HashIndex<Item>, key: u32) -> bool {
        index.find(hash(key), |item| item.key == key).is_some()
    }

    #[test]
    fn index_agrees_with_a_set_through_inserts_and_removals() {
        let mut index: HashIndex<Item> = HashIndex::new();
        let mut model = BTreeSet::new();
        let mut random = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let key = (random() % 300) as u32;
            if model.remove(&key) {
                index.remove(hash(key), |item| item.key == key);
            } else {
                model.insert(key);
                index.reserve(1);
                match index.probe(hash(key), |item| item.key == key) {
                    Probe::Vacant(slot) => index.fill(
                        slot,
                        Item {
                            hash: hash(key),
                            key,
                        },
                    ),
                    Probe::Found(_) => panic!("{key} found before it was inserted"),
                }
            }
            assert_eq!(index.len, model.len());
        }
        for key in 0..300 {
            assert_eq!(contains(&index, key), model.contains(&key), "key {key}");
        }
        for key in 0..300 {
            index.remove(hash(key), |item| item.key == key);
        }
        assert_eq!(index.len, 0);
        assert!(index.slots.iter().all(|item| item.hash == 0));
    }
}
