//! The symbol namespace shared by every module: host exports first, then the
//! exports of each loaded module. It also owns the loaded modules' records, so
//! modules stay loaded however many loaders come and go.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use foldhash::fast::FixedState;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use spin::Mutex;

use crate::addr::VirtAddr;
use crate::error::{Definer, ErrorKind, UnloadError};
use crate::memory::ModuleMemory;

/// Identifies a loaded module within its namespace. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(u64);

impl ModuleId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A symbol name, allocated once per module and shared by the module's record,
/// its export list and the namespace's index.
pub(crate) type Name = Arc<str>;

/// The hasher of every name index: fixed (a `no_std` kernel has no entropy to
/// seed one), fast on short strings. Names come from the modules loaded, which
/// the loader's owner chose (and may have required signatures for).
pub(crate) type NameHasher = FixedState;

/// A hash index keyed by name.
pub(crate) type NameMap<K, V> = HashMap<K, V, NameHasher>;

/// The seed of every name index.
pub(crate) const NAME_HASHER: NameHasher = FixedState::with_seed(0x6d6f_646c_6f61_6400);

/// Where a name's definition comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Export {
    pub address: u64,
    pub module: ModuleId,
    pub weak: bool,
}

pub(crate) struct ModuleRecord {
    pub name: Box<str>,
    /// Every global definition of the module, by name, exported or not.
    pub symbols: NameMap<Name, u64>,
    /// Names this module put into the namespace's export table.
    pub exported: Vec<Name>,
    /// Names whose `shadowed` lists this module waits in, so unloading it
    /// visits only those lists instead of every shadowed name.
    pub shadowed: Vec<Name>,
    pub comdats: Vec<Box<str>>,
    pub dependencies: Vec<ModuleId>,
    /// Loaded modules (and loads in progress) that bind to this one.
    pub users: usize,
    /// Fini functions in the order they run.
    pub fini: Vec<VirtAddr>,
    /// Held for its `Drop`, which returns the memory to the region.
    #[expect(dead_code, reason = "owned for its Drop")]
    pub memory: ModuleMemory,
}

struct State {
    host: NameMap<Box<str>, u64>,
    exports: NameMap<Name, Export>,
    /// Definitions that lost at publish to one already exported, by name, in
    /// load order. When the exporting module unloads, the first strong one
    /// (else the first weak one) takes the name, so a name stays defined for
    /// as long as a loaded module defines it.
    shadowed: NameMap<Name, Vec<Export>>,
    comdats: NameMap<Box<str>, ModuleId>,
    /// By id, which is load order.
    modules: BTreeMap<ModuleId, ModuleRecord>,
    next_id: u64,
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
                host: NameMap::with_hasher(NAME_HASHER),
                exports: NameMap::with_hasher(NAME_HASHER),
                shadowed: NameMap::with_hasher(NAME_HASHER),
                comdats: NameMap::with_hasher(NAME_HASHER),
                modules: BTreeMap::new(),
                next_id: 0,
            }),
        }
    }

    /// Adds a host symbol. Refused if the name is already defined.
    pub fn add_host_export(&self, name: &str, address: VirtAddr) -> Result<(), Definer> {
        let mut state = self.state.lock();
        if state.host.contains_key(name) {
            return Err(Definer::Host);
        }
        if let Some(export) = state.exports.get(name) {
            return Err(state.definer(export.module));
        }
        state.host.insert(name.into(), address.as_u64());
        Ok(())
    }

    /// The address `name` resolves to now, from the host or a loaded module.
    pub fn lookup(&self, name: &str) -> Option<VirtAddr> {
        self.state
            .lock()
            .resolve(name)
            .map(|(address, _)| VirtAddr::new(address))
    }

    /// The loaded modules, by id and name, in load order.
    pub fn modules(&self) -> Vec<(ModuleId, Box<str>)> {
        let state = self.state.lock();
        state
            .modules
            .iter()
            .map(|(id, record)| (*id, record.name.clone()))
            .collect()
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
    /// `comdats` runs beside `names`: for a symbol of a COMDAT copy this module
    /// discarded, the group's signature. If the name is not exported (the
    /// first copy kept it hidden), the group's owner answers for it.
    pub(crate) fn resolve_and_pin(
        &self,
        names: &[&str],
        comdats: &[Option<&str>],
    ) -> (Vec<Option<u64>>, Pins<'_>) {
        let mut state = self.state.lock();
        let mut pinned: Vec<ModuleId> = Vec::new();
        let values = names
            .iter()
            .enumerate()
            .map(|(at, name)| {
                let comdat = comdats.get(at).copied().flatten();
                let (address, module) = state
                    .resolve(name)
                    .or_else(|| state.comdat_definition(comdat?, name))?;
                if let Some(module) = module {
                    pinned.push(module);
                }
                Some(address)
            })
            .collect();
        pinned.sort_unstable();
        pinned.dedup();
        for id in &pinned {
            if let Some(record) = state.modules.get_mut(id) {
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

    /// The first strong definition among `names` that the namespace already has.
    pub(crate) fn find_duplicate<'n>(
        &self,
        strong_names: impl Iterator<Item = &'n str>,
    ) -> Option<ErrorKind> {
        let state = self.state.lock();
        state.duplicate(strong_names)
    }

    /// Adds a module and its exports. Fails, changing nothing, if a strong
    /// export collides with an existing strong definition.
    pub(crate) fn publish(
        &self,
        mut record: ModuleRecord,
        exports: &[(Name, u64, bool)],
        pins: Pins<'_>,
    ) -> Result<ModuleId, ErrorKind> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let strong = exports
            .iter()
            .filter(|(_, _, weak)| !weak)
            .map(|(name, _, _)| &**name);
        if let Some(duplicate) = state.duplicate(strong) {
            // Free the memory and the pins outside the lock.
            drop(guard);
            drop(record);
            drop(pins);
            return Err(duplicate);
        }
        let id = ModuleId(state.next_id);
        // Ids are never reused; 2^64 loads will not happen.
        state.next_id = state.next_id.wrapping_add(1);
        state.exports.reserve(exports.len());
        record.exported.reserve_exact(exports.len());
        for (name, address, weak) in exports {
            if state.host.contains_key(&**name) {
                continue; // the host's definitions never leave
            }
            let export = Export {
                address: *address,
                module: id,
                weak: *weak,
            };
            match state.exports.entry(name.clone()) {
                Entry::Vacant(vacant) => {
                    vacant.insert(export);
                    record.exported.push(name.clone());
                }
                Entry::Occupied(_) => {
                    // A definition that lost to an earlier one (a strong one
                    // here lost to an earlier weak one): next in line for the name.
                    state.shadowed.entry(name.clone()).or_default().push(export);
                    record.shadowed.push(name.clone());
                }
            }
        }
        record
            .comdats
            .retain(|signature| !state.comdats.contains_key(&**signature));
        for signature in &record.comdats {
            state.comdats.insert(signature.clone(), id);
        }
        record.dependencies = pins.into_modules();
        state.modules.insert(id, record);
        Ok(id)
    }

    /// The address of a global symbol defined by module `id`.
    pub(crate) fn module_symbol(&self, id: ModuleId, name: &str) -> Option<VirtAddr> {
        let state = self.state.lock();
        let record = state.modules.get(&id)?;
        record
            .symbols
            .get(name)
            .map(|address| VirtAddr::new(*address))
    }

    pub(crate) fn module_name(&self, id: ModuleId) -> Option<Box<str>> {
        self.state
            .lock()
            .modules
            .get(&id)
            .map(|record| record.name.clone())
    }

    /// Removes module `id` unless another module uses it. The caller runs the
    /// record's fini functions and then drops it, which frees its memory.
    pub(crate) fn remove(&self, id: ModuleId) -> Result<ModuleRecord, UnloadError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let record = state.modules.get(&id).ok_or(UnloadError::NotLoaded)?;
        if record.users > 0 {
            let users = state
                .modules
                .values()
                .filter(|other| other.dependencies.contains(&id))
                .map(|other| other.name.clone())
                .collect();
            return Err(UnloadError::InUse { users });
        }
        let record = state.modules.remove(&id).ok_or(UnloadError::NotLoaded)?;
        // Only the lists this module waits in: not every shadowed name.
        for name in &record.shadowed {
            if let Some(waiting) = state.shadowed.get_mut(&**name) {
                waiting.retain(|export| export.module != id);
                if waiting.is_empty() {
                    state.shadowed.remove(&**name);
                }
            }
        }
        for name in &record.exported {
            state.exports.remove(&**name);
            state.promote(name);
        }
        for signature in &record.comdats {
            state.comdats.remove(&**signature);
        }
        state.release(&record.dependencies);
        Ok(record)
    }
}

impl State {
    /// Gives `name`, just left by its exporter, to the next module in line.
    fn promote(&mut self, name: &Name) {
        let Some(waiting) = self.shadowed.get_mut(&**name) else {
            return;
        };
        let next = waiting.iter().position(|export| !export.weak).unwrap_or(0);
        if next >= waiting.len() {
            return;
        }
        let export = waiting.remove(next);
        if waiting.is_empty() {
            self.shadowed.remove(&**name);
        }
        if let Some(record) = self.modules.get_mut(&export.module) {
            record.exported.push(name.clone());
            self.exports.insert(name.clone(), export);
        }
    }

    fn resolve(&self, name: &str) -> Option<(u64, Option<ModuleId>)> {
        if let Some(address) = self.host.get(name) {
            return Some((*address, None));
        }
        self.exports
            .get(name)
            .map(|export| (export.address, Some(export.module)))
    }

    /// `name` as defined by the module that owns COMDAT group `signature`,
    /// exported or not (its `symbols` hold every global definition).
    fn comdat_definition(&self, signature: &str, name: &str) -> Option<(u64, Option<ModuleId>)> {
        let owner = *self.comdats.get(signature)?;
        let record = self.modules.get(&owner)?;
        let address = record.symbols.get(name)?;
        Some((*address, Some(owner)))
    }

    fn definer(&self, module: ModuleId) -> Definer {
        Definer::Module(
            self.modules
                .get(&module)
                .map_or_else(|| "?".into(), |record| record.name.clone()),
        )
    }

    fn duplicate<'n>(&self, mut strong_names: impl Iterator<Item = &'n str>) -> Option<ErrorKind> {
        strong_names.find_map(|name| {
            let existing = if self.host.contains_key(name) {
                Definer::Host
            } else {
                // A strong definition waiting behind a weak one counts too.
                let strong = self
                    .exports
                    .get(name)
                    .filter(|export| !export.weak)
                    .or_else(|| {
                        self.shadowed
                            .get(name)
                            .and_then(|waiting| waiting.iter().find(|export| !export.weak))
                    });
                match strong {
                    Some(export) => self.definer(export.module),
                    None => return None,
                }
            };
            Some(ErrorKind::DuplicateDefinition {
                name: name.into(),
                existing,
            })
        })
    }

    fn release(&mut self, modules: &[ModuleId]) {
        for id in modules {
            if let Some(record) = self.modules.get_mut(id) {
                record.users = record.users.saturating_sub(1);
            }
        }
    }
}

/// A read-only view used while planning.
pub(crate) struct NamespaceView<'s> {
    state: &'s State,
}

impl NamespaceView<'_> {
    pub fn is_defined(&self, name: &str) -> bool {
        self.state.resolve(name).is_some()
    }

    pub fn has_comdat(&self, signature: &str) -> bool {
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
