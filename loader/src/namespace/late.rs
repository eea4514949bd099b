//! Late binding in the namespace: which modules wait for which names, binding
//! their slots when a definition arrives, and the unbound path's questions
//! (see [`crate::Loader::late_binding`]).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::{ModuleId, ModuleRecord, Namespace, State};
use crate::addr::VirtAddr;

/// A pending import as the namespace keeps it: which name the module waits
/// for, and the GOT slot that binding writes.
#[derive(Clone, Debug)]
pub(crate) struct PendingImport {
    pub name: Box<str>,
    pub hash: u64,
    /// The slot's offset in the plan's layout (in the read-only segment).
    pub slot_offset: u64,
    /// The target address of the import's context: what the lazy entry
    /// hands the unbound path, and so how the namespace finds the import.
    pub context: u64,
}

/// A call to a pending import that nothing defines yet, as the namespace's
/// hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnboundCall<'a> {
    /// The module whose code made the call.
    pub module: ModuleId,
    /// That module's name.
    pub module_name: &'a str,
    /// The name it called.
    pub symbol: &'a str,
}

/// What the namespace calls for each [`UnboundCall`]. It runs on the calling
/// thread, with no lock held, in the caller's context (an interrupt handler's,
/// if that is where the call came from); the call then returns 0 to the
/// module.
pub type UnboundHook = fn(&UnboundCall<'_>);

/// A module's pending imports: how many still wait, and how many have been
/// bound since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportStatus {
    /// Imports whose slots still lead to the unbound path.
    pub pending: u32,
    /// Imports bound after the module was loaded.
    pub bound_later: u32,
}

/// One pending import of a loaded module, and the address it is bound to.
pub(super) struct Slot {
    import: PendingImport,
    bound: Option<u64>,
}

impl Slot {
    pub(super) fn new(import: PendingImport) -> Self {
        Self {
            import,
            bound: None,
        }
    }
}

impl Namespace {
    /// Installs `hook` (or, with `None`, removes it): every call to a pending
    /// import that is still unbound is reported through it.
    pub fn set_unbound_hook(&self, hook: Option<UnboundHook>) {
        self.state.lock().hook = hook;
    }

    /// The names that loaded modules wait for, each with the modules waiting
    /// (in load order), sorted by name.
    pub fn pending_imports(&self) -> Vec<(Box<str>, Vec<ModuleId>)> {
        let state = self.state.lock();
        state
            .waiting
            .iter()
            .map(|(name, modules)| {
                let mut modules = modules.clone();
                modules.sort_unstable();
                (name.clone(), modules)
            })
            .collect()
    }

    pub(crate) fn import_status(&self, id: ModuleId) -> Option<ImportStatus> {
        let state = self.state.lock();
        let record = state.record(id)?;
        let pending = record
            .pending
            .iter()
            .filter(|slot| slot.bound.is_none())
            .count();
        Some(ImportStatus {
            pending: u32::try_from(pending).unwrap_or(u32::MAX),
            bound_later: record.late_bound,
        })
    }

    /// Where module `id`'s GOT slot for pending import `name` is: the word
    /// that binding writes, in a read-only page.
    pub(crate) fn import_slot(&self, id: ModuleId, name: &str) -> Option<VirtAddr> {
        let state = self.state.lock();
        let record = state.record(id)?;
        let slot = record
            .pending
            .iter()
            .find(|slot| &*slot.import.name == name)?;
        let address = record
            .memory
            .target(crate::kinds::Segment::ReadOnly, slot.import.slot_offset);
        Some(VirtAddr::new(address))
    }

    pub(crate) fn is_used(&self, id: ModuleId) -> bool {
        self.state
            .lock()
            .record(id)
            .is_some_and(|record| record.users > 0)
    }

    pub(crate) fn unwind_tables(&self, id: ModuleId) -> Vec<VirtAddr> {
        self.state
            .lock()
            .record(id)
            .map_or_else(Vec::new, |record| record.unwind_tables.clone())
    }

    pub(crate) fn dso_handle(&self, id: ModuleId) -> Option<VirtAddr> {
        self.state.lock().record(id)?.dso_handle
    }

    /// Answers the unbound path for the import whose context is at
    /// `context`: its definition's address if it has been bound (the caller
    /// read its slot before), else 0 after telling the hook.
    pub(crate) fn unbound_call(&self, context: u64) -> u64 {
        let (hook, module, module_name, symbol) = {
            let state = self.state.lock();
            let Some(&module) = state.contexts.get(&context) else {
                return 0;
            };
            let Some(record) = state.record(module) else {
                return 0;
            };
            let Some(slot) = record
                .pending
                .iter()
                .find(|slot| slot.import.context == context)
            else {
                return 0;
            };
            if let Some(address) = slot.bound {
                return address;
            }
            let Some(hook) = state.hook else {
                return 0;
            };
            (hook, module, record.name.clone(), slot.import.name.clone())
        };
        hook(&UnboundCall {
            module,
            module_name: &module_name,
            symbol: &symbol,
        });
        0
    }
}

impl State {
    /// After module `id` is published: binds those of its pending imports
    /// that are defined by now (a module published between its planning
    /// and now), files the rest as waiting, and binds the modules waiting
    /// for names it exports.
    pub(super) fn bind_on_publish(&mut self, id: ModuleId) {
        let Some(record) = self.record(id) else {
            return;
        };
        let imports: Vec<(usize, u64, Box<str>, u64)> = record
            .pending
            .iter()
            .enumerate()
            .map(|(position, slot)| {
                let import = &slot.import;
                (position, import.hash, import.name.clone(), import.context)
            })
            .collect();
        let exports: Vec<(u64, Box<str>)> = if self.waiting.is_empty() {
            Vec::new()
        } else {
            record
                .exported
                .iter()
                .filter_map(|exported| {
                    let name = core::str::from_utf8(record.names.name(exported.at)?).ok()?;
                    Some((exported.hash, name.into()))
                })
                .collect()
        };
        for (position, hash, name, context) in imports {
            self.contexts.insert(context, id);
            let bound = match self.resolve(hash, &name) {
                Some((address, definer)) => self.bind_slot(id, position, address, definer),
                None => false,
            };
            if !bound {
                self.wait(name, id);
            }
        }
        for (hash, name) in exports {
            if let Some((address, definer)) = self.resolve(hash, &name) {
                self.bind_waiters(&name, address, definer);
            }
        }
    }

    /// Binds every module waiting for `name` to `address`, defined by
    /// `definer` (`None`: the host).
    pub(super) fn bind_waiters(&mut self, name: &str, address: u64, definer: Option<ModuleId>) {
        let Some(waiters) = self.waiting.remove(name) else {
            return;
        };
        for waiter in waiters {
            let positions: Vec<usize> = self.record(waiter).map_or_else(Vec::new, |record| {
                record
                    .pending
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| slot.bound.is_none() && &*slot.import.name == name)
                    .map(|(position, _)| position)
                    .collect()
            });
            let mut still_waiting = false;
            for position in positions {
                if !self.bind_slot(waiter, position, address, definer) {
                    still_waiting = true;
                }
            }
            if still_waiting {
                self.wait(name.into(), waiter);
            }
        }
    }

    fn wait(&mut self, name: Box<str>, module: ModuleId) {
        let modules = self.waiting.entry(name).or_default();
        if !modules.contains(&module) {
            modules.push(module);
        }
    }

    /// Writes `address` into pending import `position` of module `waiter`
    /// and records the dependency on `definer`. `false` if the platform
    /// refused to make the slot's page writable: the import stays pending.
    fn bind_slot(
        &mut self,
        waiter: ModuleId,
        position: usize,
        address: u64,
        definer: Option<ModuleId>,
    ) -> bool {
        let Some(record) = self.record_mut(waiter) else {
            return false;
        };
        let protection = record.protection;
        let Some(slot) = record.pending.get_mut(position) else {
            return false;
        };
        if record
            .memory
            .store_slot(slot.import.slot_offset, address, protection)
            .is_err()
        {
            return false;
        }
        slot.bound = Some(address);
        record.late_bound = record.late_bound.saturating_add(1);
        let Some(definer) = definer.filter(|definer| *definer != waiter) else {
            return true;
        };
        if record.dependencies.contains(&definer) {
            return true;
        }
        record.dependencies.push(definer);
        if let Some(definer) = self.record_mut(definer) {
            definer.users = definer.users.saturating_add(1);
        }
        true
    }

    /// Forgets the pending imports of module `id`, which is being removed.
    pub(super) fn forget_pending(&mut self, id: ModuleId, record: &ModuleRecord) {
        for slot in &record.pending {
            self.contexts.remove(&slot.import.context);
            if slot.bound.is_some() {
                continue;
            }
            if let Some(modules) = self.waiting.get_mut(&slot.import.name) {
                modules.retain(|module| *module != id);
                if modules.is_empty() {
                    self.waiting.remove(&slot.import.name);
                }
            }
        }
    }
}
