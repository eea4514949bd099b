//! Module addresses by name, for the crash report: [`Namespace::try_locate`],
//! which allocates nothing and gives up rather than wait for the lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicPtr, Ordering};

use modload::{Namespace, VirtAddr};

use super::text::Line;

/// The namespace to symbolize against, set by [`set_namespace`].
static NAMESPACE: AtomicPtr<Namespace> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `namespace` the one reports name module addresses from.
pub(super) fn set_namespace(namespace: &'static Namespace) {
    NAMESPACE.store(std::ptr::from_ref(namespace).cast_mut(), Ordering::Release);
}

/// What a lookup of an address found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// In a module (or, for `write_code_location`, in executable memory).
    Found,
    /// In no module; for `write_code_location`, in a mapped binary or
    /// executable memory outside modules.
    NotFound,
    /// Not in executable memory.
    NotCode,
    /// The namespace's lock is held: unknown.
    Busy,
}

/// The namespace [`set_namespace`] was given.
fn namespace() -> Option<&'static Namespace> {
    let namespace = NAMESPACE.load(Ordering::Acquire);
    // SAFETY: null, or set by `set_namespace` from a `&'static Namespace`.
    unsafe { namespace.as_ref() }
}

/// Writes `symbol+0x14 [module.o]` for an address in a loaded module (the
/// symbol of `address - before`, the offset of `address`).
pub(super) fn write_module_location(line: &mut Line, address: usize, before: usize) -> Lookup {
    let Some(namespace) = namespace() else {
        return Lookup::NotFound;
    };
    let looked_up = namespace.try_locate(
        VirtAddr::new(address.wrapping_sub(before) as u64),
        |location| {
            let Some(location) = location else {
                return false;
            };
            let (name, offset) = match &location.symbol {
                Some(symbol) => (symbol.name, symbol.offset),
                None => (location.section, location.section_offset),
            };
            let _ = write!(
                line,
                "{name}+{:#x} [{}]",
                offset.wrapping_add(before as u64),
                file_name(location.module_name)
            );
            true
        },
    );
    match looked_up {
        Some(true) => Lookup::Found,
        Some(false) => Lookup::NotFound,
        None => Lookup::Busy,
    }
}

/// Writes ` in .data` for a data address in a loaded module: with the
/// symbol line, `counter+0x8 [a.o] in .data`.
pub(super) fn write_module_section(line: &mut Line, address: usize) {
    if let Some(namespace) = namespace() {
        namespace.try_locate(VirtAddr::new(address as u64), |location| {
            if let Some(location) = location {
                let _ = write!(line, " in {}", location.section);
            }
        });
    }
}

/// The last part of a module's name: `bad.o` for `build/bad.o`.
pub(super) fn file_name(module_name: &str) -> &str {
    module_name.rsplit('/').next().unwrap_or(module_name)
}

/// Where a code address is in a module: its function's bounds and how
/// far into its section it is.
#[derive(Clone, Copy)]
// Only x86_64 reads a function's bytes (its prologue, the call before a
// return address); AArch64 has the link register instead.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct CodeSpot {
    pub(super) function_start: usize,
    pub(super) function_size: usize,
    pub(super) section_offset: usize,
}

pub(super) fn locate_code(address: usize) -> Option<CodeSpot> {
    namespace()?
        .try_locate(VirtAddr::new(address as u64), |location| {
            let location = location?;
            let symbol = location.symbol?;
            Some(CodeSpot {
                function_start: address.checked_sub(usize::try_from(symbol.offset).ok()?)?,
                function_size: usize::try_from(symbol.size).ok()?,
                section_offset: usize::try_from(location.section_offset).ok()?,
            })
        })
        .flatten()
}
