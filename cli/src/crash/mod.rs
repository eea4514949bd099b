//! Crash reports for `modload run`: a fatal signal (SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE, SIGTRAP) prints the signal, the faulting address, the program
//! counter symbolized against the loaded modules and a frame-pointer
//! backtrace to stderr, then the process dies of the signal as it would
//! have without the report (the shell sees 128 + the signal number).
//!
//! The handler must work in a process that is already broken, so it only
//! does what is async-signal-safe: it allocates nothing (each line is
//! formatted into a fixed buffer on its stack and written with `write(2)`),
//! asks the namespace with [`Namespace::try_locate`] (which gives up rather
//! than wait for a lock the crashed code may hold), reads
//! `/proc/self/maps` with `open`/`read` to name the binary of frames
//! outside modules, and runs on a stack of its own, so that a stack
//! overflow still gets its report: the main thread's, and one for each
//! thread a module starts with `pthread_create` (`threads`). The walk
//! reads only frame records that lie, aligned and in increasing order,
//! between the interrupted stack pointer and the top of its stack, so it
//! cannot fault however corrupt the frame chain is. Modules built without frame pointers give a short or
//! skipping backtrace; the PC line is exact either way.

mod folding;
mod frames;
mod maps;
mod symbols;
mod text;
mod threads;

use std::ffi::{c_int, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use modload::Namespace;

use folding::{Folder, Run};
use frames::{
    frameless_caller, stack_word, strip_pointer_authentication, Registers, FRAME_ALIGN, WORD,
};
use maps::find_mapping;
use symbols::{in_module, write_module_location, Lookup, Section};
use text::{describe_signal, Line};
pub use threads::resolve as resolve_stand_in;
use threads::AlternateStack;

/// The signals a fault in module code raises; all get a report. SIGTRAP
/// is what `__builtin_trap()` raises on AArch64 (`brk`), where x86_64
/// raises SIGILL (`ud2`); a debugger still sees its breakpoints' traps
/// first (ptrace stops come before handlers).
const FATAL_SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

/// Frames shown at most (a run of repeats counts as one): a deep stack
/// would otherwise bury the top of the report.
const MAX_FRAMES: usize = 48;

/// Frames shown after the cut at [`MAX_FRAMES`]: the bottom of the stack,
/// deep enough to reach above `main` (below it, an AArch64 `modload` has
/// about ten frames of its own and libc's).
const TAIL_FRAMES: usize = 16;

/// The main thread's stack, `[STACK_LOW, STACK_HIGH)`, recorded by [`install`].
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);
static STACK_HIGH: AtomicUsize = AtomicUsize::new(0);
/// Set by the first thread that reports: a second faulting thread waits
/// for the first to end the process instead of interleaving its report.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Installs the crash report handler for the rest of the process: module
/// code runs from constructors to `main` and on through exit handlers and
/// destructors, and a fault outside modules is reported too.
///
/// The handler's stack is this thread's alternate signal stack; threads
/// that modules start with `pthread_create` get one of their own
/// ([`resolve_stand_in`]); other threads' reports use their own stack
/// (fine unless the fault is an overflow of it).
pub fn install(namespace: &'static Namespace) -> Result<(), String> {
    symbols::set_namespace(namespace);
    record_main_stack();
    install_alternate_stack()?;
    for signal in FATAL_SIGNALS {
        // SAFETY: a zeroed `sigaction` is a valid value (no handler, empty
        // mask, no flags) that is filled in before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fatal_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa_mask` is ours to fill; blocking every signal keeps
        // other handlers off the report, and a fault inside the handler
        // then kills the process (a blocked synchronous signal does).
        unsafe { libc::sigfillset(&mut action.sa_mask) };
        // SAFETY: `action` is a complete `sigaction` whose handler is an
        // `extern "C"` function with the SA_SIGINFO signature.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(format!(
                "cannot install the crash report handler: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Records this (the main) thread's stack, the bounds the backtrace walk
/// keeps to. Without them (pthread_getattr_np failing) the walk falls back
/// to the mapping that holds the stack pointer, as for other threads.
fn record_main_stack() {
    // SAFETY: `attributes` is initialized by pthread_getattr_np before it
    // is read and destroyed after; the out-pointers are our locals.
    unsafe {
        let mut attributes: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attributes) != 0 {
            return;
        }
        let mut low: *mut c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        if libc::pthread_attr_getstack(&attributes, &mut low, &mut size) == 0 {
            STACK_LOW.store(low as usize, Ordering::Release);
            STACK_HIGH.store((low as usize).saturating_add(size), Ordering::Release);
        }
        libc::pthread_attr_destroy(&mut attributes);
    }
}

/// Maps a stack for the handler, with a guard page below it, and makes it
/// this thread's alternate signal stack (replacing the smaller one Rust's
/// runtime sets up for its stack-overflow message), for the rest of the
/// process.
fn install_alternate_stack() -> Result<(), String> {
    let stack = AlternateStack::map()?;
    stack.make_current()?;
    // Kept mapped for good: the main thread may fault until the end.
    std::mem::forget(stack);
    Ok(())
}

/// The handler: reports, then ends the process with the signal.
extern "C" fn on_fatal_signal(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    if REPORTING.swap(true, Ordering::AcqRel) {
        // Another thread is reporting and will end the process.
        loop {
            // SAFETY: pause(2) only waits.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler, for the duration of the call.
    let (info, registers) = unsafe { (&*info, Registers::of(context)) };
    report(signal, info, registers.as_ref());
    die(signal);
}

/// Restores the signal's default action and raises it again, so that the
/// process ends as it would have without the report (status, core dump).
fn die(signal: c_int) -> ! {
    // SAFETY: plain calls of async-signal-safe functions on our locals.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut unblock: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut unblock);
        libc::sigaddset(&mut unblock, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
        libc::raise(signal);
        // The default action of these signals ends the process; should it
        // not (the signal ignored by a debugger), end it anyway.
        libc::_exit(128 + signal)
    }
}

/// Writes the whole report.
fn report(signal: c_int, info: &libc::siginfo_t, registers: Option<&Registers>) {
    let mut line = Line::new();
    let _ = write!(line, "modload: {}", describe_signal(signal, info.si_code));
    // On x86_64 the kernel's own signals with SI_KERNEL carry no address:
    // SIGSEGV for a general protection fault (which a non-canonical address
    // causes), SIGTRAP for an `int3`.
    let kernel_raised = info.si_code == libc::SI_KERNEL;
    let int3 = cfg!(target_arch = "x86_64") && kernel_raised && signal == libc::SIGTRAP;
    // A signal sent with kill(2) (si_code <= 0) has no faulting address either.
    let fault_address = (info.si_code > 0 && !kernel_raised).then(|| {
        // SAFETY: for a signal the kernel raised on a fault, si_addr is
        // the field the siginfo holds.
        unsafe { info.si_addr() as usize }
    });
    if int3 {
        // Said by describe_signal: `int3 breakpoint instruction`.
    } else if kernel_raised && signal == libc::SIGSEGV {
        let _ = write!(line, " at an unknown address (a general protection fault)");
    } else if kernel_raised {
        let _ = write!(line, " at an unknown address");
    } else if let Some(address) = fault_address {
        let _ = write!(line, " at address {address:#x}");
        // Data of a module is worth naming: `counter+0x8 [a.o]`.
        if registers.is_some_and(|registers| registers.pc != address) {
            let mut name = Line::new();
            if write_module_location(&mut name, address, 0, Section::Named) == Lookup::Found {
                let _ = write!(line, " ({})", name.text());
            }
        }
    } else {
        let _ = write!(line, ", sent by a process");
    }
    let Some(registers) = registers else {
        line.emit();
        return;
    };
    // The PC saved for an `int3` is one past it: the report is about the
    // instruction, which may be the last of its function.
    let registers = &Registers {
        pc: match int3 {
            true => registers.pc.wrapping_sub(1),
            false => registers.pc,
        },
        ..*registers
    };
    let mut pc_line = Line::new();
    let _ = write!(pc_line, "  pc {:#x}  ", registers.pc);
    let pc_lookup = write_code_location(&mut pc_line, registers.pc, 0);
    if int3 {
        let _ = write!(pc_line, "  (the int3; the saved pc is one past it)");
    }
    let _ = match pc_lookup {
        Lookup::Found => write!(line, ", in a module"),
        Lookup::NotFound | Lookup::NotCode => write!(line, ", not in a module"),
        Lookup::Busy => write!(line, ", in a module or not (the namespace is busy)"),
    };
    if signal == libc::SIGSEGV
        && fault_address.is_some_and(|address| overflows_stack(address, registers.sp))
    {
        let _ = write!(line, " (a stack overflow)");
    }
    line.emit();
    pc_line.emit();
    // A jump or call to a bad address faults on the fetch, before the
    // callee saved anything.
    let fetch_fault = signal == libc::SIGSEGV && fault_address == Some(registers.pc);
    backtrace(registers, fetch_fault);
}

/// Whether a fault at `address` is the stack outgrowing its mapping: the
/// address is next to the stack pointer (a push, a call, or a frame's
/// first store) and unmapped (the main thread's guard gap) or mapped
/// inaccessible (a thread's guard page).
fn overflows_stack(address: usize, sp: usize) -> bool {
    const NEAR: usize = 64 * 1024;
    address.abs_diff(sp) <= NEAR && find_mapping(address).is_none_or(|mapping| !mapping.readable)
}

/// Walks the frame records from the interrupted frame pointer and prints
/// one line per return address.
fn backtrace(registers: &Registers, fetch_fault: bool) {
    let Some((mut low, high)) = stack_bounds(registers.sp, registers.frame_pointer) else {
        let mut line = Line::new();
        let _ = write!(
            line,
            "  (no backtrace: the stack pointer {:#x} is in no known stack)",
            registers.sp
        );
        line.emit();
        return;
    };
    let mut frames = Frames::default();
    // A fetch fault comes before the callee saved anything: the caller's
    // return address is still where the call put it (on the stack, or in
    // the link register), and the frame pointer is still the caller's. So
    // it is for a function that has no frame record of its own.
    let unrecorded_caller = if fetch_fault {
        registers
            .link
            .or_else(|| stack_word(registers.sp, 0, low, high))
    } else {
        frameless_caller(registers, low, high)
    };
    if let Some(return_address) = unrecorded_caller.filter(|address| *address != 0) {
        if !frames.push(return_address) {
            frames.finish();
            return;
        }
    }
    let mut frame = registers.frame_pointer;
    loop {
        let record_fits = frame.checked_add(2 * WORD).is_some_and(|end| end <= high);
        if !frame.is_multiple_of(FRAME_ALIGN) || frame < low || !record_fits {
            break;
        }
        // SAFETY: the two-word record lies, aligned, between the interrupted
        // stack pointer (or the previous record) and the stack's top: memory
        // of the stack that is mapped and readable.
        let (caller_frame, return_address) = unsafe {
            (
                std::ptr::read(frame as *const usize),
                std::ptr::read((frame + WORD) as *const usize),
            )
        };
        let return_address = strip_pointer_authentication(return_address);
        let already_shown = frames.shown == 1
            && unrecorded_caller == Some(return_address)
            && frame == registers.frame_pointer;
        if return_address == 0 || (!already_shown && !frames.push(return_address)) {
            break;
        }
        // Each caller's record is above its callee's: anything else is a
        // broken chain (or the end of it), and following it could loop.
        // So the walk ends, at the latest, at the top of the stack.
        if caller_frame <= frame {
            break;
        }
        low = frame + 2 * WORD;
        frame = caller_frame;
    }
    frames.finish();
}

/// The backtrace's lines: at most [`MAX_FRAMES`], with a run of frames
/// that repeats a short cycle (a recursion) as one line; past the limit
/// the walk goes on to show the last [`TAIL_FRAMES`] frames, where the
/// thread began.
#[derive(Default)]
struct Frames {
    folder: Folder,
    /// The number of the last frame taken (the PC is frame 0).
    depth: usize,
    shown: usize,
    /// Frames past the limit: how many, and the last few as
    /// `(number, return address)`, in a ring.
    hidden: usize,
    tail: [(usize, usize); TAIL_FRAMES],
    /// The last executable mapping outside modules that a hidden frame
    /// was in: most are in a few binaries, whose maps are read only once.
    known_code: (usize, usize),
}

impl Frames {
    /// Shows (or folds, or keeps for the tail) the frame that returns to
    /// `return_address`; false where the walk should stop: the address is
    /// not in code, so the chain led elsewhere (into code without frame
    /// pointers).
    fn push(&mut self, return_address: usize) -> bool {
        self.depth += 1;
        if self.hidden > 0 {
            return self.hide(self.depth, return_address);
        }
        let step = self.folder.push(return_address);
        if let Some(run) = step.ended {
            if !self.show_run(&run) {
                return false;
            }
        }
        step.folded || self.show(self.depth, return_address)
    }

    /// Shows frame `depth`, or past the limit keeps it for the tail.
    fn show(&mut self, depth: usize, return_address: usize) -> bool {
        if self.shown == MAX_FRAMES || self.hidden > 0 {
            return self.hide(depth, return_address);
        }
        self.shown += 1;
        print_frame(depth, return_address)
    }

    /// Keeps a frame past the limit in the tail ring, if it is code.
    fn hide(&mut self, depth: usize, return_address: usize) -> bool {
        let (start, end) = self.known_code;
        let in_code = (start..end).contains(&return_address)
            || in_module(return_address.wrapping_sub(1))
            || match find_mapping(return_address) {
                Some(mapping) if mapping.executable => {
                    self.known_code = (mapping.start, mapping.end);
                    true
                }
                _ => false,
            };
        if in_code {
            if let Some(slot) = self.tail.get_mut(self.hidden % TAIL_FRAMES) {
                *slot = (depth, return_address);
            }
            self.hidden += 1;
        }
        in_code
    }

    /// Shows a run of repeats: one line, or its frames if it repeated no
    /// whole cycle.
    fn show_run(&mut self, run: &Run) -> bool {
        let mut frames = run.frames_to_show().peekable();
        if frames.peek().is_none() {
            let mut line = Line::new();
            let _ = match run.period {
                1 => write!(
                    line,
                    "  ... the frame above {} more times (to #{})",
                    run.frames, run.last
                ),
                period => write!(
                    line,
                    "  ... the {period} frames above repeat, {} more frames (to #{})",
                    run.frames, run.last
                ),
            };
            line.emit();
        }
        frames.all(|(depth, return_address)| self.show(depth, return_address))
    }

    fn finish(&mut self) {
        if self.hidden == 0 {
            if let Some(run) = self.folder.finish() {
                self.show_run(&run);
            }
        }
        let mut line = Line::new();
        if self.hidden > TAIL_FRAMES {
            let first = self.tail.iter().map(|(depth, _)| *depth).min().unwrap_or(0);
            let _ = write!(
                line,
                "  ... {} more frames not shown (to #{})",
                self.hidden - TAIL_FRAMES,
                first.saturating_sub(1)
            );
            line.emit();
        }
        let kept = self.hidden.min(TAIL_FRAMES);
        for index in self.hidden - kept..self.hidden {
            if let Some((depth, return_address)) = self.tail.get(index % TAIL_FRAMES) {
                print_frame(*depth, *return_address);
            }
        }
        if self.shown == 0 && self.hidden == 0 {
            let _ = write!(
                line,
                "  (no frame records: code built without frame pointers?)"
            );
            line.emit();
        }
    }
}

/// Prints frame `depth`: its return address and where it points. Returns
/// false if that is not code.
fn print_frame(depth: usize, return_address: usize) -> bool {
    let mut line = Line::new();
    let _ = write!(line, "  #{depth} {return_address:#x}  ");
    // The call is the instruction before the return address; a call that
    // ends a function (to a `noreturn` one) returns past its end.
    let lookup = write_code_location(&mut line, return_address, 1);
    line.emit();
    lookup != Lookup::NotCode
}

/// Writes where code address `address` is: `function+0x14 [module.o]`, or
/// outside modules the binary it is in, `(libc.so.6)`. The symbol is that of
/// `address - before` (1 for return addresses), the offset that of `address`.
fn write_code_location(line: &mut Line, address: usize, before: usize) -> Lookup {
    match write_module_location(line, address, before, Section::Unnamed) {
        Lookup::Found => return Lookup::Found,
        Lookup::Busy => {
            let _ = write!(line, "(namespace busy) ");
        }
        Lookup::NotFound | Lookup::NotCode => {}
    }
    match find_mapping(address) {
        Some(mapping) => {
            let name = mapping.name();
            let _ = match name.is_empty() {
                true => write!(line, "(anonymous memory)"),
                false => write!(
                    line,
                    "({})",
                    std::str::from_utf8(name).unwrap_or("a non-UTF-8 path")
                ),
            };
            match mapping.executable {
                true => Lookup::NotFound,
                false => {
                    let _ = write!(line, ", not code");
                    Lookup::NotCode
                }
            }
        }
        None => {
            let _ = write!(line, "(unmapped)");
            Lookup::NotCode
        }
    }
}

/// The part of the interrupted thread's stack the walk may read: from its
/// stack pointer to the top of the main thread's stack recorded at install,
/// or, for another thread, to the end of the mapping that holds its stack
/// pointer. After a stack overflow the stack pointer is past the end of its
/// stack: then from the frame pointer to the end of its mapping.
fn stack_bounds(sp: usize, frame_pointer: usize) -> Option<(usize, usize)> {
    let low = STACK_LOW.load(Ordering::Acquire);
    let high = STACK_HIGH.load(Ordering::Acquire);
    if low <= sp && sp < high {
        return Some((sp, high));
    }
    [sp, frame_pointer].into_iter().find_map(|start| {
        find_mapping(start)
            .filter(|mapping| mapping.readable)
            .map(|mapping| (start, mapping.end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_overflow_is_a_fault_next_to_the_stack_pointer_in_no_mapping() {
        assert!(overflows_stack(0x1000_0000 - 8, 0x1000_0000));
        assert!(!overflows_stack(0x10, 0x1000_0000));
        let local = 0u64;
        let here = std::ptr::from_ref(&local) as usize;
        assert!(
            !overflows_stack(here, here),
            "a mapped address is no overflow"
        );
    }
}
