//! What the namespace records per name and per loaded module.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::addr::VirtAddr;
use crate::memory::protection::MemoryProtection;
use crate::memory::ModuleMemory;
use crate::namespace::index::Hashed;
use crate::namespace::late::PendingImport;
use crate::namespace::{late, AddressMap, ModuleNames};
use crate::ModuleId;

/// Who provides a name in the export table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
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
pub(crate) struct Export {
    pub(crate) hash: u64,
    /// [`Export::HOST`], or the module's slot, with [`Export::WEAK`].
    pub(crate) owner: u32,
    /// The host name's position, or the module's definition.
    pub(crate) at: u32,
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
    pub(crate) const HOST: u32 = 1 << 31;
    pub(crate) const WEAK: u32 = 1 << 30;

    #[inline]
    pub(crate) fn host(hash: u64, position: u32) -> Self {
        Self {
            hash,
            owner: Self::HOST,
            at: position,
        }
    }

    /// `slot` is below [`MAX_MODULE_SLOTS`], so clear of the flag bits.
    #[inline]
    pub(crate) fn module(hash: u64, slot: u32, definition: u32, weak: bool) -> Self {
        Self {
            hash,
            owner: slot | if weak { Self::WEAK } else { 0 },
            at: definition,
        }
    }

    #[inline]
    pub(crate) fn owner(&self) -> Owner {
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
    #[inline]
    pub(crate) fn weak(&self) -> bool {
        self.owner & (Self::HOST | Self::WEAK) == Self::WEAK
    }

    /// The address it stands for, read from its owner.
    #[inline]
    pub(crate) fn address(&self, host: &[HostExport], modules: &Slots) -> Option<u64> {
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
pub(crate) const MAX_MODULE_SLOTS: u32 = Export::WEAK;

/// A name the host exports.
pub(crate) struct HostExport {
    pub(crate) name: Box<str>,
    pub(crate) address: u64,
}

/// A definition a module has in the export table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exported {
    pub(crate) hash: u64,
    pub(crate) at: u32,
}

/// A definition that lost at publish to one already exported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiting {
    pub(crate) slot: u32,
    pub(crate) definition: u32,
    pub(crate) weak: bool,
}

/// The definitions waiting for one name, in load order. Never empty: its
/// name is its first definition's.
pub(crate) struct Shadowed {
    pub(crate) hash: u64,
    pub(crate) waiting: Vec<Waiting>,
}

pub(crate) struct ModuleRecord {
    pub(crate) name: Box<str>,
    /// The serial of the id the record was published under.
    pub(crate) serial: u64,
    /// Every global definition of the module, by name, exported or not.
    pub(crate) names: ModuleNames,
    /// Definitions this module put into the namespace's export table, with
    /// their hashes: unloading finds each entry without reading the
    /// definitions or their names.
    pub(crate) exported: Vec<Exported>,
    /// Definitions waiting in `shadowed` lists, so unloading visits only
    /// those lists instead of every shadowed name.
    pub(crate) shadowed: Vec<u32>,
    pub(crate) comdats: Vec<Box<str>>,
    pub(crate) dependencies: Vec<ModuleId>,
    /// Loaded modules (and loads in progress) that bind to this one.
    pub(crate) users: usize,
    /// Fini functions in the order they run.
    pub fini: Vec<VirtAddr>,
    /// The imports the module was loaded with pending, and what each is
    /// bound to now.
    pub(super) pending: Vec<late::Slot>,
    /// Pending imports bound since the module was loaded.
    pub(crate) late_bound: u32,
    /// What binding a pending import changes page permissions with.
    pub(crate) protection: &'static dyn MemoryProtection,
    /// The module's `__dso_handle`, if it refers to one.
    pub(crate) dso_handle: Option<VirtAddr>,
    /// Where its unwind tables are, if the loader kept them.
    pub(crate) unwind_tables: Vec<VirtAddr>,
    /// Its sections and symbols by address.
    pub(crate) addresses: AddressMap,
    /// Its destructors are running: it has left the namespace's names, but
    /// keeps its slot, memory and address ranges until they return, so a
    /// fault in one is still located.
    pub(crate) unloading: bool,
    /// Held for its `Drop`, which returns the memory to the region; binding
    /// a pending import writes its GOT slot.
    pub(crate) memory: ModuleMemory,
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
            addresses: AddressMap::default(),
            unloading: false,
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

    /// Sets the module's sections and symbols by address.
    pub fn with_addresses(mut self, addresses: AddressMap) -> Self {
        self.addresses = addresses;
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
pub(crate) type Slots = Vec<Option<ModuleRecord>>;
