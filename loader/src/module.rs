//! A handle to a loaded module.

use alloc::vec::Vec;

use crate::addr::VirtAddr;
use crate::error::UnloadError;
use crate::namespace::{ImportStatus, ModuleId, Namespace};

/// A loaded module. Dropping the handle keeps the module loaded (it belongs to
/// its namespace); [`Module::unload`] removes it and frees its memory.
pub struct Module<'n> {
    namespace: &'n Namespace,
    id: ModuleId,
}

/// A refused unload: the handle comes back with the reason.
pub struct Refused<'n> {
    /// The module, still loaded.
    pub module: Module<'n>,
    /// Why it was not unloaded.
    pub error: UnloadError,
}

impl<'n> Module<'n> {
    pub(crate) fn new(namespace: &'n Namespace, id: ModuleId) -> Self {
        Self { namespace, id }
    }

    /// A handle for module `id` of `namespace`, if it is loaded.
    pub fn from_id(namespace: &'n Namespace, id: ModuleId) -> Option<Self> {
        namespace.is_loaded(id).then_some(Self { namespace, id })
    }

    /// The module's id in its namespace.
    pub fn id(&self) -> ModuleId {
        self.id
    }

    /// The name the module was loaded under.
    pub fn name(&self) -> Option<alloc::boxed::Box<str>> {
        self.namespace.module_name(self.id)
    }

    /// The address of a global symbol this module defines.
    pub fn symbol(&self, name: &str) -> Option<VirtAddr> {
        self.namespace.module_symbol(self.id, name)
    }

    /// Whether other modules bind to this one, so that [`Module::unload`]
    /// would be refused now.
    pub fn is_used(&self) -> bool {
        self.namespace.is_used(self.id)
    }

    /// How many of the module's imports still wait for a definition, and how
    /// many were bound after it loaded (see [`Loader::late_binding`](crate::Loader::late_binding)).
    pub fn imports(&self) -> ImportStatus {
        self.namespace.import_status(self.id).unwrap_or_default()
    }

    /// The address of the GOT slot through which the module reaches `name`,
    /// if it was loaded with `name` pending (bound since or not): the word
    /// that binding writes, in a page that is read-only once finalized.
    pub fn import_slot(&self, name: &str) -> Option<VirtAddr> {
        self.namespace.import_slot(self.id, name)
    }

    /// Where the module's unwind tables are, if its loader kept them
    /// ([`Loader::keep_unwind_tables`](crate::Loader::keep_unwind_tables)):
    /// to deregister from the host's unwinder before unloading.
    pub fn unwind_tables(&self) -> Vec<VirtAddr> {
        self.namespace.unwind_tables(self.id)
    }

    /// The module's `__dso_handle`, if its code refers to one: an address
    /// unique to the module, under which C++ code registers the destructors
    /// of its static objects with `__cxa_atexit`. A host that provides
    /// `__cxa_atexit` runs them for this module alone by calling
    /// `__cxa_finalize` with this handle before unloading it.
    pub fn dso_handle(&self) -> Option<VirtAddr> {
        self.namespace.dso_handle(self.id)
    }

    /// The symbol `name` as a value of type `F`, typically an
    /// `extern "C" fn(..)` pointer. `None` if the symbol is missing or `F` is not
    /// pointer-sized.
    ///
    /// # Safety
    /// `F` must match what the symbol really is (its signature and ABI).
    pub unsafe fn get<F: Copy>(&self, name: &str) -> Option<F> {
        let address = self.symbol(name)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::call::address_as(address) }
    }

    /// Unloads the module: refused while other modules bind to its symbols.
    /// Otherwise its symbols leave the namespace, its destructors run (in reverse
    /// order of `.fini_array`), and its memory returns to the region.
    pub fn unload(self) -> Result<(), Refused<'n>> {
        let record = match self.namespace.remove(self.id) {
            Ok(record) => record,
            Err(error) => {
                return Err(Refused {
                    module: self,
                    error,
                })
            }
        };
        for destructor in &record.fini {
            // SAFETY: `start` obliged its caller to guarantee the module's code
            // may run; fini_array entries are `extern "C" fn()` by the ELF ABI,
            // and the memory is still mapped (the record is dropped below).
            unsafe { crate::call::call_void(*destructor) };
        }
        drop(record);
        Ok(())
    }
}

impl core::fmt::Debug for Module<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Module")
            .field("id", &self.id)
            .field("name", &self.name())
            .finish()
    }
}

impl core::fmt::Debug for Refused<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Refused")
            .field("module", &self.module)
            .field("error", &self.error)
            .finish()
    }
}
