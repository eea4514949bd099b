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

/// Whether [`write_module_location`] names the section too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    /// `counter+0x8 [a.o]`.
    Unnamed,
    /// `counter+0x8 [a.o] in .data`: for data addresses.
    Named,
}

/// Writes `symbol+0x14 [module.o]` for an address in a loaded module (the
/// symbol of `address - before`, the offset of `address`), followed by
/// ` in .data` (the section of `address - before`) if `section` says so.
pub(super) fn write_module_location(
    line: &mut Line,
    address: usize,
    before: usize,
    section: Section,
) -> Lookup {
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
                crate::module_file_name(location.module_name)
            );
            if section == Section::Named {
                let _ = write!(line, " in {}", location.section);
            }
            true
        },
    );
    match looked_up {
        Some(true) => Lookup::Found,
        Some(false) => Lookup::NotFound,
        None => Lookup::Busy,
    }
}

/// Whether `address` is in a module (true too if the namespace is busy:
/// a busy namespace says nothing against it).
pub(super) fn in_module(address: usize) -> bool {
    namespace().is_some_and(|namespace| {
        namespace
            .try_locate(VirtAddr::new(address as u64), |location| location.is_some())
            .unwrap_or(true)
    })
}

/// The first bytes of a function that [`CodeSpot`] holds: enough for an
/// x86_64 frame prologue after an `endbr64`.
const HEAD_BYTES: usize = 8;
/// The bytes before a return address that [`bytes_before`] reads: the
/// longest call instruction it recognizes.
pub(super) const CALL_BYTES: usize = 7;

/// Where a code address is in a module: its function's start, and the
/// function's first bytes. The bytes are
/// copied while the namespace is locked: the lock is what keeps a module's
/// memory mapped (unloading takes it), so module code is never read after
/// the lookup has let go of it.
#[derive(Clone, Copy)]
// Only x86_64 reads a function's bytes (its prologue, the call before a
// return address); AArch64 has the link register instead.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct CodeSpot {
    pub(super) function_start: usize,
    head: [u8; HEAD_BYTES],
    head_len: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl CodeSpot {
    /// Byte `offset` of the function, if it is among the first few and
    /// inside the function.
    pub(super) fn head_byte(&self, offset: usize) -> Option<u8> {
        self.head.get(..self.head_len)?.get(offset).copied()
    }
}

/// The function of a module that code address `address` is in.
pub(super) fn locate_code(address: usize) -> Option<CodeSpot> {
    namespace()?
        .try_locate(VirtAddr::new(address as u64), |location| {
            let location = location?;
            let symbol = location.symbol?;
            let function_start = address.checked_sub(usize::try_from(symbol.offset).ok()?)?;
            let function_size = usize::try_from(symbol.size).ok()?;
            let mut head = [0; HEAD_BYTES];
            let head_len = function_size.min(HEAD_BYTES);
            for (offset, byte) in head.iter_mut().enumerate().take(head_len) {
                // SAFETY: the byte is inside a function of a module that
                // the namespace's lock, held here, keeps loaded: its code
                // is mapped readable (r-x).
                *byte = unsafe { std::ptr::read((function_start + offset) as *const u8) };
            }
            Some(CodeSpot {
                function_start,
                head,
                head_len,
            })
        })
        .flatten()
}

/// The `count` bytes (at most [`CALL_BYTES`]) right before `address`, nearest
/// last, at the end of the array; the bytes not read stay zero.
///
/// # Safety
///
/// The `count` bytes before `address` must be mapped readable and stay so
/// while this reads them.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) unsafe fn read_before(address: usize, count: usize) -> [u8; CALL_BYTES] {
    let count = count.min(CALL_BYTES);
    let mut bytes = [0; CALL_BYTES];
    for (index, byte) in bytes.iter_mut().enumerate().skip(CALL_BYTES - count) {
        // SAFETY: `address - (CALL_BYTES - index)` is at most `count` bytes
        // before `address`, readable as the caller guarantees.
        *byte = unsafe { std::ptr::read((address - (CALL_BYTES - index)) as *const u8) };
    }
    bytes
}

/// Up to [`CALL_BYTES`] bytes of module code right before `address` (a
/// return address), nearest last, as far back as its section goes; read
/// under the namespace's lock, as [`CodeSpot`]'s are. `None` if `address - 1`
/// is in no module (or the namespace is busy).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn bytes_before(address: usize) -> Option<([u8; CALL_BYTES], usize)> {
    // The call is the instruction before the return address, which may
    // be the first byte past its section (a call that ends it).
    let last = address.checked_sub(1)?;
    namespace()?
        .try_locate(VirtAddr::new(last as u64), |location| {
            let location = location?;
            let in_section = usize::try_from(location.section_offset)
                .ok()?
                .checked_add(1)?;
            let count = in_section.min(CALL_BYTES);
            // SAFETY: the `count` bytes before `address` are within the
            // section that holds `address - 1`, of a module the namespace's
            // lock, held here, keeps loaded and mapped readable.
            let bytes = unsafe { read_before(address, count) };
            Some((bytes, count))
        })
        .flatten()
}
