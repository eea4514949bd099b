//! Alternate signal stacks for the threads modules start, so that a stack
//! overflow in one of them gets its report too.
//!
//! A signal handler runs on the interrupted thread's stack unless that
//! thread has an alternate signal stack, and a new thread starts without
//! one. A thread that overflowed its stack has no room left for the
//! handler: the kernel cannot deliver the signal and kills the process
//! without a report. So modules' calls to `pthread_create` resolve to
//! [`module_pthread_create`] (see `crate::dl`), which starts the thread in
//! [`start_thread`]: that maps a guard-paged alternate stack, makes it the
//! thread's with `sigaltstack`, then runs the module's start routine.
//!
//! The stack is disabled and unmapped when the thread ends, however it
//! ends: right after the start routine returns, and otherwise (the thread
//! calls `pthread_exit` or is cancelled, which unwind past
//! [`start_thread`]) by a thread-local destructor, which glibc runs at the
//! exit of every thread.
//!
//! Not covered: threads that libraries start for modules, which call
//! `pthread_create` inside the library (C11 `thrd_create`, C++
//! `std::thread` in libstdc++, a `pthread_create` found with `dlsym`).
//! Their reports still come, on their own stack, for every fault but an
//! overflow of that stack.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};

use modload::VirtAddr;

/// The handler's own stack: a report needs a few KiB (core::fmt, the
/// `/proc/self/maps` buffer), with plenty of room to spare.
pub(super) const ALTERNATE_STACK_BYTES: usize = 64 * 1024;

/// A thread's start routine. Declared `C-unwind`: `pthread_exit` and
/// cancellation unwind through it (and through [`start_thread`]).
type StartRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;

extern "C" {
    /// glibc's `pthread_create`, declared with a start routine that may be
    /// unwound (the ABI is that of an `extern "C"` one).
    #[link_name = "pthread_create"]
    fn libc_pthread_create(
        thread: *mut libc::pthread_t,
        attributes: *const libc::pthread_attr_t,
        routine: StartRoutine,
        argument: *mut c_void,
    ) -> c_int;
}

/// What a module's thread is to run, handed to [`start_thread`].
struct Start {
    routine: StartRoutine,
    argument: *mut c_void,
}

/// The address modules get for `name`, where this tool stands in for the
/// library function: `pthread_create`.
pub fn resolve(name: &str) -> Option<VirtAddr> {
    let address = match name {
        "pthread_create" => module_pthread_create as StandIn as usize,
        _ => return None,
    };
    Some(VirtAddr::new(address as u64))
}

type StandIn = extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> c_int;

/// `pthread_create` for modules: the thread runs `routine(argument)` in
/// [`start_thread`], with an alternate signal stack.
extern "C" fn module_pthread_create(
    thread: *mut libc::pthread_t,
    attributes: *const libc::pthread_attr_t,
    routine: StartRoutine,
    argument: *mut c_void,
) -> c_int {
    let start = Box::into_raw(Box::new(Start { routine, argument }));
    // SAFETY: the caller's arguments are passed on as given; `start` is
    // ours, and the new thread takes it over.
    let status = unsafe { libc_pthread_create(thread, attributes, start_thread, start.cast()) };
    if status != 0 {
        // SAFETY: no thread was started, so `start` is still ours alone.
        drop(unsafe { Box::from_raw(start) });
    }
    status
}

thread_local! {
    /// This thread's alternate stack, if [`start_thread`] mapped one; its
    /// destructor unmaps it when the thread ends by `pthread_exit`.
    static THREAD_STACK: RefCell<Option<AlternateStack>> = const { RefCell::new(None) };
}

/// The start routine of modules' threads: sets up the alternate stack,
/// then runs the module's. Nothing here has a destructor to run while the
/// module's routine runs, so `pthread_exit` may unwind through it.
extern "C-unwind" fn start_thread(start: *mut c_void) -> *mut c_void {
    // SAFETY: `module_pthread_create` passed its boxed `Start`, which this
    // thread alone now owns.
    let Start { routine, argument } = *unsafe { Box::from_raw(start.cast::<Start>()) };
    // Without a stack (out of memory) the thread still runs, as it would
    // have without this tool; only an overflow of its stack goes unreported.
    if let Ok(stack) = AlternateStack::map() {
        if stack.make_current().is_ok() {
            THREAD_STACK.with(|slot| *slot.borrow_mut() = Some(stack));
        }
    }
    let result = routine(argument);
    THREAD_STACK.with(|slot| slot.borrow_mut().take());
    result
}

/// A stack for the signal handler, with a guard page below it.
pub(super) struct AlternateStack {
    base: *mut c_void,
    total: usize,
    stack: libc::stack_t,
}

impl AlternateStack {
    /// Maps one: [`ALTERNATE_STACK_BYTES`] read-write above a guard page.
    pub(super) fn map() -> Result<Self, String> {
        let page = modload_platform::host::host_page_size()
            .map_err(|error| format!("cannot map the crash handler's stack: {error}"))?
            .bytes();
        let guard = usize::try_from(page).unwrap_or(4096);
        let total = ALTERNATE_STACK_BYTES + guard;
        // SAFETY: a fresh private anonymous mapping; it touches no memory of ours.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "cannot map the crash handler's stack: {}",
                std::io::Error::last_os_error()
            ));
        }
        let stack = base.cast::<u8>().wrapping_add(guard).cast::<c_void>();
        let mapped = Self {
            base,
            total,
            stack: libc::stack_t {
                ss_sp: stack,
                ss_flags: 0,
                ss_size: ALTERNATE_STACK_BYTES,
            },
        };
        // SAFETY: `stack` and the ALTERNATE_STACK_BYTES after it are the
        // part of our new mapping above its guard page.
        let made_usable = unsafe {
            libc::mprotect(
                stack,
                ALTERNATE_STACK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if made_usable != 0 {
            return Err(format!(
                "cannot set up the crash handler's stack: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(mapped)
    }

    /// Makes it this thread's alternate signal stack.
    pub(super) fn make_current(&self) -> Result<(), String> {
        // SAFETY: the stack is mapped read-write; whoever owns `self` keeps
        // it mapped while it is current (the main thread's for good, a
        // module thread's until `Drop` disables it).
        match unsafe { libc::sigaltstack(&self.stack, std::ptr::null_mut()) } {
            0 => Ok(()),
            _ => Err(format!(
                "cannot set up the crash handler's stack: {}",
                std::io::Error::last_os_error()
            )),
        }
    }
}

impl Drop for AlternateStack {
    /// Disables the stack if it is this thread's (the module may have set
    /// its own since), then unmaps it.
    fn drop(&mut self) {
        // SAFETY: a zeroed `stack_t` is valid; sigaltstack fills it in.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: reads this thread's alternate stack into our local.
        let read = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
        if read == 0
            && current.ss_sp == self.stack.ss_sp
            && current.ss_flags & libc::SS_DISABLE == 0
        {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling takes no memory; it fails (EPERM) only on
            // the stack itself, which a thread ending is not running on.
            if unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) } != 0 {
                // Still in use: leave it mapped rather than pull it away.
                return;
            }
        }
        // SAFETY: our own mapping, no longer any thread's alternate stack.
        unsafe { libc::munmap(self.base, self.total) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pthread_create_is_stood_in_for() {
        assert!(resolve("pthread_create").is_some());
        assert!(resolve("pthread_join").is_none());
    }
}
