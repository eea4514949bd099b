//! The namespace's tables behind its lock, and the operations on them.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hashbrown::HashTable;

use crate::error::{Definer, ErrorKind};
use crate::names::NameMap;
use crate::namespace::addresses::RangeKey;
use crate::namespace::index::HashIndex;
use crate::namespace::names::{name_bytes, Definition};
use crate::namespace::records::{Export, Exported, HostExport, Owner, Shadowed, Slots, Waiting};
use crate::namespace::{ModuleNames, ModuleRecord};
use crate::{ModuleId, UnboundHook, UnloadHook};

pub(crate) struct State {
    /// Names of the host exports, by position; they never leave.
    pub(crate) host: Vec<HostExport>,
    /// Every exported name: the host's, then each module's first definition.
    pub(crate) exports: HashIndex<Export>,
    /// Definitions that lost at publish to one already exported, by name, in
    /// load order. When the exporting module unloads, the first strong one
    /// (else the first weak one) takes the name, so a name stays defined for
    /// as long as a loaded module defines it. Only exported names have one.
    pub(crate) shadowed: HashTable<Shadowed>,
    pub(crate) comdats: NameMap<Box<str>, ModuleId>,
    pub(crate) modules: Slots,
    /// Empty slots of `modules`.
    pub(crate) free: Vec<u32>,
    pub(crate) next_serial: u64,
    /// Pending imports nothing defines yet: the modules waiting, by name.
    pub(crate) waiting: BTreeMap<Box<str>, Vec<ModuleId>>,
    /// Every pending import's context (bound or not), and whose it is.
    pub(crate) contexts: BTreeMap<u64, ModuleId>,
    /// Told about calls to pending imports that are still unbound.
    pub(crate) hook: Option<UnboundHook>,
    /// Told about each module that unloads, before its memory is freed.
    pub(crate) unload_hook: Option<UnloadHook>,
    /// Every loaded section's address ranges, to the range's end: what
    /// [`Namespace::locate`](crate::Namespace::locate) searches.
    pub(crate) ranges: BTreeMap<RangeKey, u64>,
}

/// The export of `name` (hashed as `hash`), if any.
#[inline]
pub(crate) fn find<'t>(
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
#[inline]
pub(crate) fn owner_name<'s>(
    host: &'s [HostExport],
    modules: &'s Slots,
    owner: Owner,
) -> Option<&'s [u8]> {
    match owner {
        Owner::Host(position) => host.get(position as usize).map(|host| host.name.as_bytes()),
        Owner::Module { slot, definition } => module_name(modules, slot, definition),
    }
}

/// The name of definition `definition` of the module in `slot`.
#[inline]
pub(crate) fn module_name(modules: &Slots, slot: u32, definition: u32) -> Option<&[u8]> {
    modules.get(slot as usize)?.as_ref()?.names.name(definition)
}

/// The shadowed list of `name` (hashed as `hash`), if any.
#[inline]
pub(crate) fn waiting_for<'t>(
    shadowed: &'t HashTable<Shadowed>,
    modules: &Slots,
    hash: u64,
    name: &[u8],
) -> Option<&'t Shadowed> {
    shadowed.find(hash, |list| list_is_for(list, modules, hash, name))
}

#[inline]
pub(crate) fn list_is_for(list: &Shadowed, modules: &Slots, hash: u64, name: &[u8]) -> bool {
    list.hash == hash
        && list
            .waiting
            .first()
            .and_then(|first| module_name(modules, first.slot, first.definition))
            == Some(name)
}

#[inline]
pub(crate) fn definer(modules: &Slots, slot: u32) -> Definer {
    Definer::Module(
        modules
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map_or_else(|| "?".into(), |record| record.name.clone()),
    )
}

pub(crate) fn duplicate_error(
    text: &[u8],
    definition: &Definition,
    existing: Definer,
) -> ErrorKind {
    // A name came from a `&str`, so it is UTF-8.
    let name = core::str::from_utf8(name_bytes(text, definition)).unwrap_or_default();
    ErrorKind::DuplicateDefinition {
        name: name.into(),
        existing,
    }
}

/// [`State::conflict`], on the tables it reads.
pub(crate) fn conflict(
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
pub(crate) fn lose(
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
pub(crate) fn unlink(
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
    #[inline]
    pub(crate) fn record(&self, id: ModuleId) -> Option<&ModuleRecord> {
        self.modules
            .get(id.slot as usize)?
            .as_ref()
            .filter(|record| record.serial == id.serial && !record.unloading)
    }

    #[inline]
    pub(crate) fn record_mut(&mut self, id: ModuleId) -> Option<&mut ModuleRecord> {
        self.modules
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|record| record.serial == id.serial && !record.unloading)
    }

    #[inline]
    pub(crate) fn id_of(&self, slot: u32) -> Option<ModuleId> {
        let record = self
            .modules
            .get(slot as usize)?
            .as_ref()
            .filter(|record| !record.unloading)?;
        Some(ModuleId {
            serial: record.serial,
            slot,
        })
    }

    /// The names of the modules that depend on `id`, in load order.
    pub(crate) fn users_of(&self, id: ModuleId) -> Vec<Box<str>> {
        let mut users: Vec<(u64, Box<str>)> = self
            .modules
            .iter()
            .flatten()
            .filter(|other| !other.unloading && other.dependencies.contains(&id))
            .map(|other| (other.serial, other.name.clone()))
            .collect();
        users.sort_unstable_by_key(|(serial, _)| *serial);
        users.into_iter().map(|(_, name)| name).collect()
    }

    /// Who `export` makes a strong definition of `name` collide with: the
    /// host, a strong exporter, or a strong definition waiting behind a weak
    /// exporter. The module in slot `own` (being published) never counts.
    pub(crate) fn conflict(
        &self,
        export: &Export,
        name: &[u8],
        own: Option<u32>,
    ) -> Option<Definer> {
        conflict(&self.shadowed, &self.modules, export, name, own)
    }

    /// Puts the exports of the module in `slot` (already in place) into the
    /// tables, one probe per name: the first definition of a name wins, a
    /// later one waits in the name's shadowed list. On a strong duplicate,
    /// takes out what it added and reports the first one, in definition order.
    pub(crate) fn link(&mut self, slot: u32) -> Result<(), ErrorKind> {
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
    pub(crate) fn promote(&mut self, hash: u64, name: &[u8]) {
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

    #[inline]
    pub(crate) fn resolve(&self, hash: u64, name: &str) -> Option<(u64, Option<ModuleId>)> {
        let export = find(&self.exports, &self.host, &self.modules, hash, name)?;
        let module = match export.owner() {
            Owner::Host(_) => None,
            Owner::Module { slot, .. } => Some(self.id_of(slot)?),
        };
        Some((export.address(&self.host, &self.modules)?, module))
    }

    /// `name` as defined by the module that owns COMDAT group `signature`,
    /// exported or not (its `names` hold every global definition).
    pub(crate) fn comdat_definition(
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

    pub(crate) fn release(&mut self, modules: &[ModuleId]) {
        for id in modules {
            if let Some(record) = self.record_mut(*id) {
                record.users = record.users.saturating_sub(1);
            }
        }
    }
}
