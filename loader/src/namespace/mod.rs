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
use crate::error::{Definer, DuplicateExport, ErrorKind, UnloadError};
use crate::names::{name_hash, NameMap, NAME_HASHER};
use crate::plan::Existing;

mod addresses;
mod index;
pub(crate) mod late;
mod names;
mod records;
mod state;

use index::HashIndex;
use names::name_bytes;
pub(crate) use names::{DefinitionKind, ModuleNames, NameList, NameSizes};
pub(crate) use records::ModuleRecord;
use records::{Export, HostExport, Owner, MAX_MODULE_SLOTS};
use state::{definer, duplicate_error, find, owner_name, unlink, State};

pub(crate) use addresses::{AddressMap, AddressMapBuilder};
pub use addresses::{LocatedSymbol, Location, ModuleSymbol};
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

/// Told that module `id` unloads, from [`Module::unload`](crate::Module::unload):
/// after its destructors ran and it left the namespace (so
/// [`Namespace::locate`] no longer finds it), before its memory returns to
/// the region, with no lock held. What a host keeps about the module, such
/// as a debugger's registration of it, goes here before another module can
/// take its memory.
pub type UnloadHook = fn(ModuleId);

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
                unload_hook: None,
                ranges: BTreeMap::new(),
            }),
        }
    }

    /// Adds a host symbol. Refused if the name is already defined.
    pub fn add_host_export(&self, name: &str, address: VirtAddr) -> Result<(), DuplicateExport> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let hash = name_hash(name);
        let refused = |existing| DuplicateExport {
            name: name.into(),
            existing,
        };
        if let Some(export) = find(&state.exports, &state.host, &state.modules, hash, name) {
            return Err(refused(match export.owner() {
                Owner::Host(_) => Definer::Host,
                Owner::Module { slot, .. } => definer(&state.modules, slot),
            }));
        }
        // 2^32 host names would need hundreds of GiB of table first.
        let position = u32::try_from(state.host.len()).map_err(|_| refused(Definer::Host))?;
        state.host.push(HostExport {
            name: name.into(),
            address: address.as_u64(),
        });
        state.exports.insert(Export::host(hash, position));
        state.bind_waiters(name, address.as_u64(), None);
        Ok(())
    }

    /// Installs `hook` (or, with `None`, removes it): every module that
    /// unloads from now on is reported through it.
    pub fn set_unload_hook(&self, hook: Option<UnloadHook>) {
        self.state.lock().unload_hook = hook;
    }

    pub(crate) fn unload_hook(&self) -> Option<UnloadHook> {
        self.state.lock().unload_hook
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
                let record = record.as_ref().filter(|record| !record.unloading)?;
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
        state.index_addresses(slot);
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

    /// Starts unloading module `id` unless another module uses it: its
    /// names, COMDAT groups, pending imports and dependencies leave the
    /// namespace, so nothing new binds to it and lookups by id no longer see
    /// it, but it keeps its slot, its memory and its address ranges (a fault
    /// in a destructor is still located). Returns its fini functions, for
    /// the caller to run before [`Namespace::finish_unload`].
    ///
    /// Visits only the module's own names (and the lists they wait in).
    pub(crate) fn begin_unload(&self, id: ModuleId) -> Result<Vec<VirtAddr>, UnloadError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let record = state.record(id).ok_or(UnloadError::NotLoaded)?;
        if record.users > 0 {
            return Err(UnloadError::InUse {
                users: state.users_of(id),
            });
        }
        // Out of its slot while the tables are changed, then back.
        let mut record = state
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
        let dependencies = core::mem::take(&mut record.dependencies);
        state.release(&dependencies);
        let fini = core::mem::take(&mut record.fini);
        record.unloading = true;
        if let Some(place) = state.modules.get_mut(id.slot as usize) {
            *place = Some(record);
        }
        Ok(fini)
    }

    /// Ends the unload [`Namespace::begin_unload`] started: the record leaves
    /// its slot and its address ranges leave the index. The caller drops
    /// it, which frees its memory.
    pub(crate) fn finish_unload(&self, id: ModuleId) -> Option<ModuleRecord> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let place = state.modules.get_mut(id.slot as usize)?;
        if !place
            .as_ref()
            .is_some_and(|record| record.serial == id.serial && record.unloading)
        {
            return None;
        }
        let record = place.take()?;
        state.unindex_addresses(id.slot, &record.addresses);
        state.free.push(id.slot);
        Some(record)
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
    use super::index::{HashIndex, Hashed, Probe};
    use super::{
        name_bytes, name_hash, DefinitionKind, Export, NameList, NameSizes, Owner, MAX_MODULE_SLOTS,
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
