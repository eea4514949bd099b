//! The loader: which namespace, region and platform a load uses. It is a small
//! `Copy` value; modules never depend on it staying alive.

use crate::addr::VirtAddr;
use crate::elf::Object;
use crate::error::LoadError;
use crate::module::Module;
use crate::plan;
use crate::protection::MemoryProtection;
use crate::region::Region;
use crate::stage::Planned;
use crate::symbols::Namespace;

/// Resolves names the namespace does not define (the last step of resolution).
pub trait SymbolResolver: Sync {
    /// The address of `name`, if this resolver knows it.
    fn resolve(&self, name: &str) -> Option<VirtAddr>;
}

impl<F: Fn(&str) -> Option<VirtAddr> + Sync> SymbolResolver for F {
    fn resolve(&self, name: &str) -> Option<VirtAddr> {
        self(name)
    }
}

/// Loads modules into a namespace, from a region, through a platform.
///
/// Dropping a loader changes nothing: loaded modules belong to the namespace
/// and their memory to the region.
#[derive(Clone, Copy)]
pub struct Loader<'l> {
    pub(crate) namespace: &'l Namespace,
    pub(crate) region: &'static Region,
    pub(crate) protection: &'static dyn MemoryProtection,
    pub(crate) fallback: Option<&'l dyn SymbolResolver>,
}

impl<'l> Loader<'l> {
    /// A loader for `namespace`, allocating from `region` and protecting pages
    /// through `protection`.
    pub fn new(
        namespace: &'l Namespace,
        region: &'static Region,
        protection: &'static dyn MemoryProtection,
    ) -> Self {
        Self {
            namespace,
            region,
            protection,
            fallback: None,
        }
    }

    /// Resolves names the namespace lacks through `resolver`.
    pub fn with_fallback(mut self, resolver: &'l dyn SymbolResolver) -> Self {
        self.fallback = Some(resolver);
        self
    }

    /// The namespace modules are loaded into.
    pub fn namespace(&self) -> &'l Namespace {
        self.namespace
    }

    /// The region module memory comes from.
    pub fn region(&self) -> &'static Region {
        self.region
    }

    /// Plans `object` against the namespace as it is now. Nothing is allocated.
    pub fn plan<'a>(&self, object: Object<'a>) -> Result<Planned<'l, 'a>, LoadError> {
        let (plan, layout) = self.namespace.view(|view| plan::plan(&object, view))?;
        Ok(Planned::new(*self, object, plan, layout))
    }

    /// Parses, plans, allocates, relocates, finalizes and starts a module in
    /// one call. On error nothing stays allocated and the namespace is unchanged.
    ///
    /// # Safety
    /// Starting a module runs its constructors, and later calls run its code:
    /// the object must be code the caller trusts to run in this program.
    pub unsafe fn load(&self, name: &str, bytes: &[u8]) -> Result<Module<'l>, LoadError> {
        let object = Object::parse(name, bytes)?;
        let finalized = self.plan(object)?.allocate()?.relocate()?.finalize()?;
        // SAFETY: forwarded from this function's contract.
        unsafe { finalized.start() }
    }
}
