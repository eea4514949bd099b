//! A handle to a loaded module.

use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use crate::addr::VirtAddr;
use crate::error::{DebugObjectError, UnloadError};
use crate::namespace::{ImportStatus, ModuleId, ModuleSymbol, Namespace};

/// A loaded module. Dropping the handle keeps the module loaded (it belongs to
/// its namespace); [`Module::unload`] removes it and frees its memory.
pub struct Module<'n> {
    namespace: &'n Namespace,
    id: ModuleId,
}

/// A symbol of a loaded module as a value of type `T`, usually an
/// `extern "C" fn` pointer, from [`Module::get`]. It borrows the module's
/// handle, as `libloading::Symbol` borrows its library, so it cannot be used
/// once the module is unloaded. It derefs to `T`.
#[derive(Clone, Copy)]
pub struct Symbol<'m, T> {
    value: T,
    module: PhantomData<&'m ()>,
}

impl<T: Copy> Symbol<'_, T> {
    /// The bare value, no longer tied to the module's handle.
    ///
    /// # Safety
    /// The value must not be used after the module is unloaded: by then its
    /// memory may hold another module's code or data.
    pub unsafe fn into_raw(self) -> T {
        self.value
    }
}

impl<T> core::ops::Deref for Symbol<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Symbol<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Symbol").field(&self.value).finish()
    }
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

    /// The module's symbols (local ones too) at their target addresses,
    /// sorted by address: for a profiler's map or a listing.
    pub fn symbols(&self) -> Vec<ModuleSymbol> {
        self.namespace.module_symbols(self.id)
    }

    /// A copy of `elf`, the object this module was loaded from, with each
    /// loaded section's address (`sh_addr`) set to its target address: what
    /// a debugger reads to show the module's functions and source lines
    /// where they run (GDB's JIT interface takes it as it is). Fails if
    /// `elf` is not that object.
    ///
    /// A module loaded from a set ([`Object::join`](crate::Object::join))
    /// has one such object per member: see [`Module::member_debug_object`].
    pub fn debug_object(&self, elf: &[u8]) -> Result<Vec<u8>, DebugObjectError> {
        self.member_debug_object(0, elf)
    }

    /// [`Module::debug_object`] for member `member` of a module loaded from
    /// a set, `elf` being that member's bytes.
    pub fn member_debug_object(
        &self,
        member: usize,
        elf: &[u8],
    ) -> Result<Vec<u8>, DebugObjectError> {
        let headers = self
            .namespace
            .module_section_headers(self.id)
            .unwrap_or_default();
        let members = headers
            .iter()
            .map(|(owner, ..)| (*owner as usize).saturating_add(1))
            .max()
            .unwrap_or(1);
        if member >= members {
            return Err(DebugObjectError::NoSuchMember { member });
        }
        crate::object::debug::with_section_addresses(
            elf,
            headers
                .into_iter()
                .filter(|(owner, ..)| *owner as usize == member)
                .map(|(_, index, target, size)| (index, target, size)),
        )
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
    /// `extern "C" fn(..)` pointer, borrowed from this handle. `None` if the
    /// symbol is missing or `F` is not pointer-sized.
    ///
    /// The [`Symbol`] derefs to `F`, so a function is called as `f(2, 3)`.
    /// It borrows the handle, and [`Module::unload`] takes the handle by
    /// value, so a symbol cannot be used after its module is unloaded:
    ///
    /// ```compile_fail,E0505
    /// fn use_after_unload(module: modload::Module<'_>) {
    ///     // SAFETY: `answer` is `int answer(void)` in the module's C source.
    ///     let answer = unsafe { module.get::<extern "C" fn() -> i32>("answer") };
    ///     let Some(answer) = answer else { return };
    ///     let _ = module.unload();
    ///     answer(); // error[E0505]: cannot move out of `module` while borrowed
    /// }
    /// ```
    ///
    /// [`Symbol::into_raw`] gives the bare value where a borrow cannot be
    /// kept, such as a function pointer stored in a kernel's table.
    ///
    /// The borrow guards uses through the `Symbol` only: `F` is `Copy`, so
    /// `let f: F = *symbol;` takes the value out of it as `into_raw` does,
    /// and the compiler no longer sees the module behind it.
    ///
    /// # Safety
    /// `F` must match what the symbol really is (its signature and ABI), and
    /// a value copied out of the `Symbol` (`*symbol`) must not be used after
    /// the module is unloaded.
    pub unsafe fn get<F: Copy>(&self, name: &str) -> Option<Symbol<'_, F>> {
        let address = self.symbol(name)?;
        // SAFETY: forwarded from this function's contract.
        let value = unsafe { crate::call::address_as(address) }?;
        Some(Symbol {
            value,
            module: PhantomData,
        })
    }

    /// Unloads the module: refused while other modules bind to its symbols.
    /// Otherwise its symbols leave the namespace, its destructors run (in reverse
    /// order of `.fini_array`), and its memory returns to the region.
    pub fn unload(self) -> Result<(), Refused<'n>> {
        let fini = match self.namespace.begin_unload(self.id) {
            Ok(fini) => fini,
            Err(error) => {
                return Err(Refused {
                    module: self,
                    error,
                })
            }
        };
        for destructor in &fini {
            // SAFETY: `start` obliged its caller to guarantee the module's code
            // may run; fini_array entries are `extern "C" fn()` by the ELF ABI,
            // and the memory is still mapped (the record is dropped below).
            unsafe { crate::call::call_void(*destructor) };
        }
        let record = self.namespace.finish_unload(self.id);
        if let Some(hook) = self.namespace.unload_hook() {
            hook(self.id);
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

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.module.name() {
            Some(name) => write!(f, "unloading module {name} was refused"),
            None => f.write_str("unloading the module was refused"),
        }
    }
}

/// The reason is the source, so that a report that walks the chain (as
/// `anyhow` and `eyre` do) shows it once.
impl core::error::Error for Refused<'_> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
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
