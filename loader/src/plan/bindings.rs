//! How each symbol gets its address: defined here, looked up, yielded,
//! common, or discarded.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::error::{ErrorKind, LoadError, SymbolProblem};
use crate::object::{Object, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, STT_FILE};
use crate::plan::{Binding, Existing, DSO_HANDLE_SYMBOL, GOT_SYMBOL};

#[inline]
pub(crate) fn bind_symbols<'a>(
    object: &Object<'a>,
    loaded: &[bool],
    discarded: &[Option<&'a str>],
    namespace: &impl Existing,
) -> Result<(Vec<Binding>, BTreeMap<usize, &'a str>), LoadError> {
    let mut comdat_of = BTreeMap::new();
    let mut bindings = Vec::with_capacity(object.symbols.len());
    for (index, symbol) in object.symbols.iter().enumerate() {
        let shndx = symbol.shndx;
        let fail = |problem| {
            object.error(ErrorKind::Symbol {
                index,
                name: symbol.name.into(),
                problem,
            })
        };
        let binding = if index == 0 || symbol.kind == STT_FILE {
            Binding::Unused
        } else if shndx == SHN_UNDEF && symbol.name == GOT_SYMBOL {
            Binding::GotBase
        } else if shndx == SHN_UNDEF && symbol.name == DSO_HANDLE_SYMBOL {
            Binding::DsoHandle
        } else if shndx == SHN_UNDEF {
            Binding::External
        } else if shndx == SHN_ABS {
            Binding::Absolute(symbol.value)
        } else if shndx == SHN_COMMON {
            // A tentative definition: the first one loaded wins, like a weak symbol.
            if namespace.is_defined(symbol.name) {
                Binding::External
            } else {
                Binding::Common { offset: 0 }
            }
        } else if shndx >= SHN_LORESERVE {
            return Err(fail(SymbolProblem::BadSectionIndex { shndx }));
        } else if let Some(signature) = discarded.get(shndx as usize).copied().flatten() {
            if symbol.is_global() {
                // The first copy may have kept it hidden: then only its
                // group's owner can answer for it (see `Layout::comdat_of`).
                comdat_of.insert(index, signature);
                Binding::External
            } else {
                Binding::Discarded
            }
        } else if !loaded.get(shndx as usize).copied().unwrap_or(false) {
            Binding::Discarded
        } else {
            let size = object
                .sections
                .get(shndx as usize)
                .map_or(0, |section| section.size);
            if symbol.value > size {
                return Err(fail(SymbolProblem::OutOfSection));
            }
            // A weak definition yields to one already loaded, but keeps its own
            // copy in case that one is gone by relocation time.
            if symbol.is_weak() && symbol.is_exported() && namespace.is_defined(symbol.name) {
                Binding::Yielded {
                    section: shndx as usize,
                    value: symbol.value,
                }
            } else {
                Binding::Section {
                    section: shndx as usize,
                    value: symbol.value,
                }
            }
        };
        bindings.push(binding);
    }
    Ok((bindings, comdat_of))
}
