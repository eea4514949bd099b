//! Resolving a module's external names, once each, before relocating.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use crate::addr::VirtAddr;
use crate::error::{ErrorKind, LoadError};
use crate::loader::Loader;
use crate::names::EMPTY_NAME_HASH;
use crate::namespace::{DefinitionKind, NameList, NameSizes, Pins};
use crate::object::Object;
use crate::plan::{Binding, Layout};

pub(crate) struct Resolution<'l> {
    /// Per symbol index: the address of an external symbol.
    pub external: Vec<Option<u64>>,
    /// Per symbol index: a weak undefined symbol that nothing defines (its
    /// address is 0, but AArch64 relative references resolve it differently).
    pub absent_weak: Vec<bool>,
    /// The symbol indices of the pending imports nothing defines now, in
    /// ascending order.
    pub unbound: Vec<usize>,
    pub pins: Pins<'l>,
}

/// Looks up every external name once, in namespace order, then the fallback.
/// Also names (and hashes, once) the module's global definitions: a strong
/// one the namespace already has fails the load here, before relocating.
#[inline]
pub(crate) fn resolve<'l>(
    loader: &Loader<'l>,
    object: &Object<'_>,
    layout: &Layout<'_>,
) -> Result<(Resolution<'l>, NameList), LoadError> {
    // A yielded weak definition is still this module's: it is offered as a
    // weak export at its own address, so it can take the name over when the
    // definition it yielded to goes.
    let defines = |symbol: &crate::object::Symbol<'_>, binding: &Binding| {
        symbol.is_global()
            && (binding.is_defined_here() || matches!(binding, Binding::Yielded { .. }))
    };
    let symbols = || object.symbols.iter().zip(&layout.bindings);
    // Measured first, so the names and definitions are allocated once.
    let mut sizes = NameSizes::new();
    for (symbol, _) in symbols().filter(|(symbol, binding)| defines(symbol, binding)) {
        sizes.add(symbol.name_at as usize, symbol.name.len());
    }
    let global_definitions = symbols()
        .enumerate()
        .filter(|(_, (symbol, binding))| defines(symbol, binding))
        .map(|(index, (symbol, binding))| {
            let exported = symbol.is_exported();
            let weak = symbol.is_weak();
            let kind = DefinitionKind {
                exported,
                // A COMMON symbol is a tentative definition: a real one may follow.
                weak: weak || matches!(binding, Binding::Common { .. }),
                strong_here: exported && !weak && binding.is_defined_here(),
            };
            let at = symbol.name_at as usize;
            (index, at, symbol.name, symbol.hash, kind)
        });
    let globals = NameList::collect(sizes, object.strings, global_definitions)
        .map_err(|kind| object.error(kind))?;
    if let Some(duplicate) = loader.namespace.find_duplicate(&globals) {
        return Err(object.error(duplicate));
    }
    let wanted: Vec<usize> = (0..object.symbols.len())
        .filter(|index| {
            matches!(
                layout.bindings.get(*index),
                Some(Binding::External | Binding::Yielded { .. })
            )
        })
        .collect();
    let names: Vec<(&str, u64)> = wanted
        .iter()
        .map(|index| {
            object
                .symbols
                .get(*index)
                .map_or(("", EMPTY_NAME_HASH), |symbol| (symbol.name, symbol.hash))
        })
        .collect();
    let comdats: Vec<Option<&str>> = wanted
        .iter()
        .map(|index| layout.comdat_of.get(index).copied())
        .collect();
    let (found, pins) = loader.namespace.resolve_and_pin(&names, &comdats);
    let mut external = vec![None; object.symbols.len()];
    let mut absent_weak = vec![false; object.symbols.len()];
    let mut unbound = Vec::new();
    let mut missing: Vec<Box<str>> = Vec::new();
    for ((index, (name, _)), found) in wanted.iter().zip(&names).zip(found) {
        let weak = object
            .symbols
            .get(*index)
            .is_some_and(|symbol| symbol.is_weak());
        let address = found.or_else(|| {
            loader
                .fallback
                .and_then(|fallback| fallback.resolve(name))
                .map(VirtAddr::as_u64)
        });
        let yielded = matches!(layout.bindings.get(*index), Some(Binding::Yielded { .. }));
        if yielded {
            // Found: bind to it. Gone: `symbol_values` uses the module's own copy.
            if let Some(slot) = external.get_mut(*index) {
                *slot = address;
            }
            continue;
        }
        if address.is_none() && weak {
            if let Some(flag) = absent_weak.get_mut(*index) {
                *flag = true;
            }
        }
        match address.or(if weak { Some(0) } else { None }) {
            Some(address) => {
                if let Some(slot) = external.get_mut(*index) {
                    *slot = Some(address);
                }
            }
            // Planned as pending (`layout.pending` is in symbol order): its
            // slots lead to the unbound path. `wanted` ascends, so does this.
            None if layout.pending.binary_search(index).is_ok() => unbound.push(*index),
            None => missing.push((*name).into()),
        }
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        return Err(object.error(ErrorKind::Unresolved { names: missing }));
    }
    let resolution = Resolution {
        external,
        absent_weak,
        unbound,
        pins,
    };
    Ok((resolution, globals))
}
