//! The loader's ways into the stages: planning an object, and loading one
//! in a single call.

use alloc::vec::Vec;

use crate::error::{ErrorKind, LoadError};
use crate::limits::Limit;
use crate::loader::Loader;
use crate::module::Module;
use crate::object::Object;
use crate::plan::{self, Existing};

use super::Planned;

impl<'l> Loader<'l> {
    /// Plans `object` against the namespace as it is now. Nothing is allocated.
    ///
    /// The object is held to this loader's limits again (it may have been
    /// parsed with others), and the plan's size to the per-module bound,
    /// before any region memory is reserved. When signatures are required, an
    /// object not parsed by [`Loader::parse`] with a trusted key is refused.
    pub fn plan<'a>(&self, object: Object<'a>) -> Result<Planned<'l, 'a>, LoadError> {
        self.check_object(&object)
            .map_err(|kind| object.error(kind))?;
        let pending = self.pending_candidates(&object);
        let page = self.region.page_size();
        let (plan, layout) = self
            .namespace
            .view(|view| plan::plan(&object, view, &pending, self.unwind_tables, page))?;
        self.limits
            .check(Limit::ModuleSize, plan.size())
            .map_err(|exceeded| object.error(exceeded.into()))?;
        Ok(Planned::new(*self, object, plan, layout))
    }

    /// With late binding, per symbol index: whether it is a strong undefined
    /// name that neither the namespace nor the fallback defines now, so
    /// that planning may leave it pending. The fallback is asked outside
    /// the namespace's lock. Empty without late binding.
    fn pending_candidates(&self, object: &Object<'_>) -> Vec<bool> {
        if !self.late_binding {
            return Vec::new();
        }
        let undefined = |symbol: &crate::object::Symbol<'_>| {
            symbol.is_undefined()
                && symbol.is_global()
                && !symbol.is_weak()
                && !symbol.name.is_empty()
                && !plan::is_module_defined(symbol.name)
        };
        let mut candidates: Vec<bool> = self.namespace.view(|view| {
            object
                .symbols
                .iter()
                .map(|symbol| undefined(symbol) && !view.is_defined(symbol.name))
                .collect()
        });
        if let Some(fallback) = self.fallback {
            for (candidate, symbol) in candidates.iter_mut().zip(&object.symbols) {
                if *candidate && fallback.resolve(symbol.name).is_some() {
                    *candidate = false;
                }
            }
        }
        candidates
    }

    fn check_object(&self, object: &Object<'_>) -> Result<(), ErrorKind> {
        #[cfg(feature = "signature")]
        if let Some(keys) = self.trusted {
            if !object.is_signed_by(keys) {
                return Err(ErrorKind::Signature {
                    problem: crate::error::SignatureProblem::Unsigned,
                });
            }
        }
        let relocations = object
            .relocations
            .iter()
            .map(|section| section.len() as u64)
            .fold(0u64, u64::saturating_add);
        let longest_name = object
            .symbols
            .iter()
            .map(|symbol| symbol.name.len() as u64)
            .max()
            .unwrap_or(0);
        self.limits
            .check(Limit::Sections, object.sections.len() as u64)?;
        self.limits
            .check(Limit::Symbols, object.symbols.len() as u64)?;
        self.limits.check(Limit::Relocations, relocations)?;
        Ok(self.limits.check(Limit::SymbolNameLength, longest_name)?)
    }

    /// Parses, plans, allocates, relocates, finalizes and starts a module in
    /// one call. On error nothing stays allocated and the namespace is unchanged.
    ///
    /// # Safety
    /// Starting a module runs its constructors, and later calls run its code:
    /// the object must be code the caller trusts to run in this program.
    pub unsafe fn load(&self, name: &str, bytes: &[u8]) -> Result<Module<'l>, LoadError> {
        let object = self.parse(name, bytes)?;
        let finalized = self.plan(object)?.allocate()?.relocate()?.finalize()?;
        // SAFETY: forwarded from this function's contract.
        unsafe { finalized.start() }
    }
}
