//! GDB's JIT interface: tells a debugger about code that was not in the
//! program when it started, so that it can set breakpoints in it by name and
//! show its source lines.
//!
//! This is the interface the GDB manual documents under "JIT Compilation
//! Interface": the program keeps a doubly linked list of in-memory object
//! files, rooted at a global `__jit_debug_descriptor`, and calls the empty
//! function `__jit_debug_register_code` after each change. GDB sets a
//! breakpoint on that function when it finds it in the program's symbols; at
//! each stop it reads the descriptor's `action_flag` and `relevant_entry`, and
//! loads (or drops) the object file the entry points at. When it attaches to a
//! program that already registered objects, it walks the list from
//! `first_entry`. A program that no debugger watches pays one call to an
//! empty function per change.
//!
//! For a module loaded by modload, the object to register is the module's ELF
//! file with each loaded section's `sh_addr` set to where it was placed
//! (`modload::Module::debug_object`): GDB reads its symbols and DWARF, applying
//! the object's relocations itself, as it does for LLVM's JIT code.
//!
//! ```no_run
//! # fn object_bytes() -> Vec<u8> { Vec::new() }
//! use modload_platform::gdb_jit;
//!
//! let registration = gdb_jit::register(object_bytes());
//! // ... the code the object describes runs; GDB knows its functions ...
//! drop(registration); // or registration.unregister(): GDB forgets them
//! ```
//!
//! The list is guarded by a spin lock, so registrations can come from any
//! thread (or CPU). Registering from a signal or interrupt handler that may
//! interrupt a registration would deadlock, as any lock would.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::{self, NonNull};

use modload::{DebugObjectError, Module, ModuleId};

/// What the last change to the list was, in [`JitDescriptor::action_flag`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitAction {
    /// Nothing happened (the state before the first registration).
    NoAction = 0,
    /// `relevant_entry` was added to the list.
    Register = 1,
    /// `relevant_entry` was taken out of the list.
    Unregister = 2,
}

/// One in-memory object file: GDB's `struct jit_code_entry`.
#[repr(C)]
#[derive(Debug)]
pub struct JitCodeEntry {
    /// The next entry, or null at the end of the list.
    pub next_entry: *mut JitCodeEntry,
    /// The previous entry, or null at the start of the list.
    pub prev_entry: *mut JitCodeEntry,
    /// The object file's first byte.
    pub symfile_addr: *const u8,
    /// The object file's size in bytes.
    pub symfile_size: u64,
}

/// The list's root: GDB's `struct jit_descriptor`, which GDB finds by the
/// name [`__jit_debug_descriptor`].
#[repr(C)]
#[derive(Debug)]
pub struct JitDescriptor {
    /// The interface's version: always 1.
    pub version: u32,
    /// A [`JitAction`]: what the last call to [`__jit_debug_register_code`]
    /// reports.
    pub action_flag: u32,
    /// The entry the last action added or removed.
    pub relevant_entry: *mut JitCodeEntry,
    /// The first entry of the list, or null when it is empty.
    pub first_entry: *mut JitCodeEntry,
}

/// The descriptor GDB reads, under the name the GDB manual gives it.
///
/// Only this module writes it, under its lock; everything else should
/// treat it as GDB's.
#[no_mangle]
#[used]
pub static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: JitAction::NoAction as u32,
    relevant_entry: ptr::null_mut(),
    first_entry: ptr::null_mut(),
};

/// Where GDB puts its breakpoint: called after each change to the list.
///
/// It does nothing, but must stay a real function that every change calls:
/// `#[no_mangle]` keeps the symbol GDB looks for, `#[inline(never)]` keeps
/// the calls out of line, and the empty `asm!` (which the compiler must
/// assume has side effects) keeps the optimizer from dropping the calls to a
/// function without effects.
#[no_mangle]
#[inline(never)]
pub extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty instruction sequence: it touches no memory, stack or
    // flags; it only stands for an effect the compiler cannot see.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

/// Serializes every change to [`__jit_debug_descriptor`] and its list, and
/// the call that reports it.
static LIST_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// An object file registered with the debugger. Dropping it (or calling
/// [`Registration::unregister`]) takes it out of the list and tells the
/// debugger, which forgets the object's symbols.
///
/// It owns the object's bytes and the list entry, which stay at the same
/// address while it lives, since the debugger reads both.
#[derive(Debug)]
pub struct Registration {
    /// The entry in the list, allocated by `Box` and owned by this value.
    entry: NonNull<JitCodeEntry>,
    /// The bytes `entry.symfile_addr` points at.
    object: Box<[u8]>,
}

// SAFETY: the entry is only reached through the list while LIST_LOCK is held,
// or by this value alone once it is out of the list; the object's bytes are
// never written after registration.
unsafe impl Send for Registration {}
// SAFETY: `&Registration` gives access to nothing but reads of the object's
// immutable bytes.
unsafe impl Sync for Registration {}

impl Registration {
    /// The object file as the debugger sees it.
    pub fn object(&self) -> &[u8] {
        &self.object
    }

    /// Takes the object out of the debugger's list now, as dropping does.
    pub fn unregister(self) {
        drop(self);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _guard = LIST_LOCK.lock();
        // SAFETY: LIST_LOCK is held, so nothing else reads or writes the
        // descriptor from this program; the entry is in the list (linked by
        // `register`, unlinked only here).
        unsafe {
            let descriptor = &mut *ptr::addr_of_mut!(__jit_debug_descriptor);
            unlink(descriptor, self.entry.as_ptr());
            descriptor.relevant_entry = self.entry.as_ptr();
            descriptor.action_flag = JitAction::Unregister as u32;
        }
        // The entry is still allocated while the debugger looks at it.
        __jit_debug_register_code();
        // SAFETY: as above, LIST_LOCK is held.
        unsafe {
            let descriptor = &mut *ptr::addr_of_mut!(__jit_debug_descriptor);
            descriptor.relevant_entry = ptr::null_mut();
            descriptor.action_flag = JitAction::NoAction as u32;
        }
        // SAFETY: the entry came from `Box::into_raw` in `register`, is out
        // of the list and reported, so nothing refers to it any more.
        drop(unsafe { Box::from_raw(self.entry.as_ptr()) });
    }
}

/// Registers `object`, an ELF object file, with the debugger: adds it to the
/// front of the list and calls [`__jit_debug_register_code`], where an
/// attached GDB stops briefly to read it.
pub fn register(object: Vec<u8>) -> Registration {
    let object = object.into_boxed_slice();
    let entry = Box::new(JitCodeEntry {
        next_entry: ptr::null_mut(),
        prev_entry: ptr::null_mut(),
        symfile_addr: object.as_ptr(),
        symfile_size: object.len() as u64,
    });
    let entry = NonNull::from(Box::leak(entry));
    let _guard = LIST_LOCK.lock();
    // SAFETY: LIST_LOCK is held; the entry is a fresh allocation in no list.
    unsafe {
        let descriptor = &mut *ptr::addr_of_mut!(__jit_debug_descriptor);
        link_first(descriptor, entry.as_ptr());
        descriptor.relevant_entry = entry.as_ptr();
        descriptor.action_flag = JitAction::Register as u32;
    }
    __jit_debug_register_code();
    Registration { entry, object }
}

/// The registrations of loaded modules, by module: what a host keeps so
/// that each module's debug objects leave the debugger when it unloads.
/// It can be a `static`; call [`ModuleRegistrations::unloaded`] from the
/// namespace's unload hook (`Namespace::set_unload_hook`).
pub struct ModuleRegistrations {
    list: spin::Mutex<Vec<(ModuleId, Registration)>>,
}

impl Default for ModuleRegistrations {
    fn default() -> Self {
        Self::new()
    }
}

impl ModuleRegistrations {
    /// None yet.
    pub const fn new() -> Self {
        Self {
            list: spin::Mutex::new(Vec::new()),
        }
    }

    /// Registers the debug object of member `member` of `module`
    /// (`Module::member_debug_object`; 0 for a module of one object), made
    /// from `elf`, the bytes it was loaded from.
    pub fn loaded(
        &self,
        module: &Module<'_>,
        member: usize,
        elf: &[u8],
    ) -> Result<(), DebugObjectError> {
        let object = module.member_debug_object(member, elf)?;
        let registration = register(object);
        self.list.lock().push((module.id(), registration));
        Ok(())
    }

    /// Unregisters every debug object of module `id`.
    pub fn unloaded(&self, id: ModuleId) {
        let gone: Vec<_> = self
            .list
            .lock()
            .extract_if(.., |(module, _)| *module == id)
            .collect();
        // Dropping each tells the debugger, outside this list's lock.
        drop(gone);
    }
}

/// How many objects are registered now.
pub fn registered_count() -> usize {
    let _guard = LIST_LOCK.lock();
    // SAFETY: LIST_LOCK is held, so the list does not change while it is walked.
    unsafe { entries(&*ptr::addr_of!(__jit_debug_descriptor)).count() }
}

/// Puts `entry` at the front of `descriptor`'s list.
///
/// # Safety
/// `entry` is valid and in no list; every entry in the list is valid; the
/// caller has exclusive access to the descriptor and its entries.
unsafe fn link_first(descriptor: &mut JitDescriptor, entry: *mut JitCodeEntry) {
    let first = descriptor.first_entry;
    // SAFETY: the caller guarantees `entry` and `first` (when not null) are
    // valid and not aliased elsewhere.
    unsafe {
        (*entry).prev_entry = ptr::null_mut();
        (*entry).next_entry = first;
        if let Some(first) = first.as_mut() {
            first.prev_entry = entry;
        }
    }
    descriptor.first_entry = entry;
}

/// Takes `entry` out of `descriptor`'s list.
///
/// # Safety
/// `entry` is valid and in this list; every entry in the list is valid; the
/// caller has exclusive access to the descriptor and its entries.
unsafe fn unlink(descriptor: &mut JitDescriptor, entry: *mut JitCodeEntry) {
    // SAFETY: the caller guarantees `entry` and its neighbours (when not
    // null) are valid entries of this list, not aliased elsewhere.
    unsafe {
        let previous = (*entry).prev_entry;
        let next = (*entry).next_entry;
        match previous.as_mut() {
            Some(previous) => previous.next_entry = next,
            None => descriptor.first_entry = next,
        }
        if let Some(next) = next.as_mut() {
            next.prev_entry = previous;
        }
        (*entry).prev_entry = ptr::null_mut();
        (*entry).next_entry = ptr::null_mut();
    }
}

/// The entries of `descriptor`'s list, first to last.
///
/// # Safety
/// Every entry in the list is valid and the list does not change while the
/// iterator is used.
unsafe fn entries(descriptor: &JitDescriptor) -> impl Iterator<Item = *mut JitCodeEntry> {
    let mut next = descriptor.first_entry;
    core::iter::from_fn(move || {
        let entry = NonNull::new(next)?;
        // SAFETY: the caller guarantees every entry of the list is valid.
        next = unsafe { entry.as_ref().next_entry };
        Some(entry.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> JitDescriptor {
        JitDescriptor {
            version: 1,
            action_flag: 0,
            relevant_entry: ptr::null_mut(),
            first_entry: ptr::null_mut(),
        }
    }

    fn entry(size: u64) -> *mut JitCodeEntry {
        Box::into_raw(Box::new(JitCodeEntry {
            next_entry: ptr::null_mut(),
            prev_entry: ptr::null_mut(),
            symfile_addr: ptr::null(),
            symfile_size: size,
        }))
    }

    /// The sizes in list order, after checking every back link.
    fn sizes(descriptor: &JitDescriptor) -> Vec<u64> {
        let mut previous: *mut JitCodeEntry = ptr::null_mut();
        let mut sizes = Vec::new();
        // SAFETY: the tests' entries are all live boxes.
        for entry in unsafe { entries(descriptor) } {
            // SAFETY: as above.
            let entry_ref = unsafe { &*entry };
            assert_eq!(
                entry_ref.prev_entry, previous,
                "back link of {}",
                entry_ref.symfile_size
            );
            sizes.push(entry_ref.symfile_size);
            previous = entry;
        }
        sizes
    }

    fn free(entries: &[*mut JitCodeEntry]) {
        for &entry in entries {
            // SAFETY: each came from Box::into_raw in `entry` and is freed once.
            drop(unsafe { Box::from_raw(entry) });
        }
    }

    #[test]
    fn new_entries_go_first() {
        let mut descriptor = empty();
        let all = [entry(1), entry(2), entry(3)];
        for &each in &all {
            // SAFETY: fresh entries, and this test owns the descriptor.
            unsafe { link_first(&mut descriptor, each) };
        }
        assert_eq!(sizes(&descriptor), [3, 2, 1]);
        free(&all);
    }

    #[test]
    fn unlinking_the_first_middle_and_last_entry_keeps_both_links_right() {
        let mut descriptor = empty();
        let all = [entry(1), entry(2), entry(3), entry(4)];
        for &each in &all {
            // SAFETY: fresh entries, and this test owns the descriptor.
            unsafe { link_first(&mut descriptor, each) };
        }
        // The list is 4 3 2 1: take out the middle (3), the last (1), the first (4).
        // SAFETY: each is in the list once and unlinked once.
        unsafe { unlink(&mut descriptor, all[2]) };
        assert_eq!(sizes(&descriptor), [4, 2, 1]);
        // SAFETY: as above.
        unsafe { unlink(&mut descriptor, all[0]) };
        assert_eq!(sizes(&descriptor), [4, 2]);
        // SAFETY: as above.
        unsafe { unlink(&mut descriptor, all[3]) };
        assert_eq!(sizes(&descriptor), [2]);
        // SAFETY: as above.
        unsafe { unlink(&mut descriptor, all[1]) };
        assert!(descriptor.first_entry.is_null());
        for &each in &all {
            // SAFETY: live boxes, out of the list.
            let each = unsafe { &*each };
            assert!(each.next_entry.is_null() && each.prev_entry.is_null());
        }
        free(&all);
    }

    #[test]
    fn register_reports_each_change_through_the_descriptor() {
        let object = alloc::vec![0x7f, b'E', b'L', b'F', 9, 9];
        let expected_address = object.as_ptr();
        let registration = register(object);
        let entry = registration.entry.as_ptr();
        {
            let _guard = LIST_LOCK.lock();
            // SAFETY: LIST_LOCK is held while the descriptor is read.
            let descriptor = unsafe { &*ptr::addr_of!(__jit_debug_descriptor) };
            assert_eq!(descriptor.version, 1);
            // SAFETY: as above; the registration keeps the entry alive.
            let listed = unsafe { entries(descriptor) }.any(|each| each == entry);
            assert!(listed, "a registered entry is in the list");
            // SAFETY: the registration owns the entry.
            let entry = unsafe { &*entry };
            assert_eq!(
                entry.symfile_addr, expected_address,
                "the bytes do not move"
            );
            assert_eq!(entry.symfile_size, 6);
        }
        assert_eq!(registration.object(), [0x7f, b'E', b'L', b'F', 9, 9]);
        registration.unregister();
        let _guard = LIST_LOCK.lock();
        // SAFETY: LIST_LOCK is held.
        let descriptor = unsafe { &*ptr::addr_of!(__jit_debug_descriptor) };
        // SAFETY: as above.
        let listed = unsafe { entries(descriptor) }.any(|each| each == entry);
        assert!(!listed, "an unregistered entry is out of the list");
    }
}
