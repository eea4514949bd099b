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
//! overflow still gets its report. The walk reads only frame records that
//! lie, aligned and in increasing order, between the interrupted stack
//! pointer and the top of its stack, so it cannot fault however corrupt the
//! frame chain is. Modules built without frame pointers give a short or
//! skipping backtrace; the PC line is exact either way.

use std::ffi::{c_int, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use modload::{Namespace, VirtAddr};

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

/// The handler's own stack: a report needs a few KiB (core::fmt, the
/// `/proc/self/maps` buffer), with plenty of room to spare.
const ALTERNATE_STACK_BYTES: usize = 64 * 1024;

/// Frames shown at most (a run of repeats counts as one): a deep stack
/// would otherwise bury the top of the report.
const MAX_FRAMES: usize = 48;

/// A frame record is two words: the caller's frame pointer, then the
/// return address (x86_64 `push rbp; mov rbp, rsp`; AArch64 `stp x29, x30`).
const WORD: usize = std::mem::size_of::<usize>();

/// Frame pointers are at least this aligned: 8 on x86_64 (16 in practice,
/// but hand-written code need not keep that), 16 on AArch64, whose stack
/// pointer is always 16-byte aligned.
#[cfg(target_arch = "aarch64")]
const FRAME_ALIGN: usize = 16;
#[cfg(not(target_arch = "aarch64"))]
const FRAME_ALIGN: usize = 8;

/// The namespace to symbolize against, set by [`install`].
static NAMESPACE: AtomicPtr<Namespace> = AtomicPtr::new(std::ptr::null_mut());
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
/// that modules start have none, so their reports use their own stack
/// (fine unless the fault is an overflow of it).
pub fn install(namespace: &'static Namespace) -> Result<(), String> {
    NAMESPACE.store(std::ptr::from_ref(namespace).cast_mut(), Ordering::Release);
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
/// runtime sets up for its stack-overflow message).
fn install_alternate_stack() -> Result<(), String> {
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
    // SAFETY: `stack` and the ALTERNATE_STACK_BYTES after it are the part of
    // our new mapping above its guard page.
    let made_usable = unsafe {
        libc::mprotect(
            stack,
            ALTERNATE_STACK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    let alternate = libc::stack_t {
        ss_sp: stack,
        ss_flags: 0,
        ss_size: ALTERNATE_STACK_BYTES,
    };
    // SAFETY: the stack is mapped read-write and never unmapped (it serves
    // for the rest of the process).
    if made_usable != 0 || unsafe { libc::sigaltstack(&alternate, std::ptr::null_mut()) } != 0 {
        return Err(format!(
            "cannot set up the crash handler's stack: {}",
            std::io::Error::last_os_error()
        ));
    }
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

/// The interrupted thread's registers that the report needs.
struct Registers {
    pc: usize,
    sp: usize,
    frame_pointer: usize,
    /// The link register (AArch64): the return address of a function that
    /// faulted before saving it.
    link: Option<usize>,
}

impl Registers {
    /// Reads them from the `ucontext_t` the kernel passed to the handler.
    ///
    /// # Safety
    /// `context` is the handler's third argument.
    #[cfg(target_arch = "x86_64")]
    unsafe fn of(context: *mut c_void) -> Option<Self> {
        // SAFETY: the caller passes the kernel's ucontext_t.
        let context = unsafe { &*context.cast::<libc::ucontext_t>() };
        let gregs = &context.uc_mcontext.gregs;
        let register = |index: c_int| {
            usize::try_from(index)
                .ok()
                .and_then(|index| gregs.get(index))
                .map_or(0, |value| *value as usize)
        };
        Some(Self {
            pc: register(libc::REG_RIP),
            sp: register(libc::REG_RSP),
            frame_pointer: register(libc::REG_RBP),
            link: None,
        })
    }

    /// Reads them from the `ucontext_t` the kernel passed to the handler.
    ///
    /// # Safety
    /// `context` is the handler's third argument.
    #[cfg(target_arch = "aarch64")]
    unsafe fn of(context: *mut c_void) -> Option<Self> {
        // SAFETY: the caller passes the kernel's ucontext_t.
        let context = unsafe { &*context.cast::<libc::ucontext_t>() };
        let machine = &context.uc_mcontext;
        let register = |index: usize| machine.regs.get(index).map_or(0, |value| *value as usize);
        Some(Self {
            pc: machine.pc as usize,
            sp: machine.sp as usize,
            frame_pointer: register(29),
            link: Some(strip_pointer_authentication(register(30))),
        })
    }

    /// No ucontext layout known for this machine: the report has only its
    /// first line.
    ///
    /// # Safety
    /// Nothing is read.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    unsafe fn of(_context: *mut c_void) -> Option<Self> {
        None
    }
}

/// A return address as stored, with any pointer authentication code (the
/// bits above the 48-bit user address space) removed.
#[cfg(target_arch = "aarch64")]
fn strip_pointer_authentication(address: usize) -> usize {
    address & ((1 << 48) - 1)
}
#[cfg(not(target_arch = "aarch64"))]
fn strip_pointer_authentication(address: usize) -> usize {
    address
}

/// Writes the whole report.
fn report(signal: c_int, info: &libc::siginfo_t, registers: Option<&Registers>) {
    let mut line = Line::new();
    let _ = write!(line, "modload: {}", describe_signal(signal, info.si_code));
    // A signal sent with kill(2) (si_code <= 0) has no faulting address,
    // nor has an x86_64 general protection fault (SI_KERNEL), which a
    // non-canonical address causes.
    let fault_address = (info.si_code > 0 && info.si_code != libc::SI_KERNEL).then(|| {
        // SAFETY: for a signal the kernel raised on a fault, si_addr is
        // the field the siginfo holds.
        unsafe { info.si_addr() as usize }
    });
    if info.si_code == libc::SI_KERNEL {
        let _ = write!(line, " at an unknown address (a general protection fault)");
    } else if let Some(address) = fault_address {
        let _ = write!(line, " at address {address:#x}");
        // Data of a module is worth naming: `counter+0x8 [a.o]`.
        if registers.is_some_and(|registers| registers.pc != address) {
            let mut name = Line::new();
            if write_module_location(&mut name, address, 0) == Lookup::Found {
                write_module_section(&mut name, address);
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
    let mut pc_line = Line::new();
    let _ = write!(pc_line, "  pc {:#x}  ", registers.pc);
    let pc_lookup = write_code_location(&mut pc_line, registers.pc, 0);
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
        match registers.link {
            Some(link) => Some(link),
            None if registers.sp.is_multiple_of(WORD)
                && registers.sp >= low
                && registers.sp < high =>
            {
                // SAFETY: the word at sp lies within the interrupted
                // thread's stack, between its stack pointer and its top.
                Some(unsafe { std::ptr::read(registers.sp as *const usize) })
            }
            None => None,
        }
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

/// The backtrace's lines: at most [`MAX_FRAMES`], and a run of frames with
/// the same return address (a recursion) as one line.
#[derive(Default)]
struct Frames {
    /// The number of the next frame (the PC is frame 0).
    depth: usize,
    shown: usize,
    previous: usize,
    repeats: usize,
    cut: bool,
}

impl Frames {
    /// Shows (or counts) the frame that returns to `return_address`; false
    /// where the walk should stop: too many frames, or the address is not
    /// in code, so the chain led elsewhere (into code without frame pointers).
    fn push(&mut self, return_address: usize) -> bool {
        self.depth += 1;
        if return_address == self.previous {
            self.repeats += 1;
            return true;
        }
        self.show_repeats(self.depth - 1);
        if self.shown == MAX_FRAMES {
            self.cut = true;
            return false;
        }
        self.shown += 1;
        self.previous = return_address;
        print_frame(self.depth, return_address)
    }

    /// Shows the run of repeats that ended with frame `last`, if any.
    fn show_repeats(&mut self, last: usize) {
        if self.repeats > 0 {
            let mut line = Line::new();
            let _ = write!(
                line,
                "  ... the frame above {} more times (to #{last})",
                self.repeats
            );
            line.emit();
            self.repeats = 0;
        }
    }

    fn finish(&mut self) {
        self.show_repeats(self.depth);
        let mut line = Line::new();
        if self.cut {
            let _ = write!(line, "  ... (more frames not shown)");
            line.emit();
        } else if self.shown == 0 {
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

/// What a lookup of an address found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// In a module (or, for [`write_code_location`], in executable memory).
    Found,
    /// In no module; for [`write_code_location`], in a mapped binary or
    /// executable memory outside modules.
    NotFound,
    /// Not in executable memory.
    NotCode,
    /// The namespace's lock is held: unknown.
    Busy,
}

/// Writes where code address `address` is: `function+0x14 [module.o]`, or
/// outside modules the binary it is in, `(libc.so.6)`. The symbol is that of
/// `address - before` (1 for return addresses), the offset that of `address`.
fn write_code_location(line: &mut Line, address: usize, before: usize) -> Lookup {
    match write_module_location(line, address, before) {
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

/// The namespace [`install`] was given.
fn namespace() -> Option<&'static Namespace> {
    let namespace = NAMESPACE.load(Ordering::Acquire);
    // SAFETY: null, or set by `install` from a `&'static Namespace`.
    unsafe { namespace.as_ref() }
}

/// Writes `symbol+0x14 [module.o]` for an address in a loaded module (the
/// symbol of `address - before`, the offset of `address`).
fn write_module_location(line: &mut Line, address: usize, before: usize) -> Lookup {
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
fn write_module_section(line: &mut Line, address: usize) {
    if let Some(namespace) = namespace() {
        namespace.try_locate(VirtAddr::new(address as u64), |location| {
            if let Some(location) = location {
                let _ = write!(line, " in {}", location.section);
            }
        });
    }
}

/// The last part of a module's name: `bad.o` for `build/bad.o`.
fn file_name(module_name: &str) -> &str {
    module_name.rsplit('/').next().unwrap_or(module_name)
}

/// Where a code address is in a module: its function's bounds and how
/// far into its section it is.
#[derive(Clone, Copy)]
// Only x86_64 reads a function's bytes (its prologue, the call before a
// return address); AArch64 has the link register instead.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct CodeSpot {
    function_start: usize,
    function_size: usize,
    section_offset: usize,
}

fn locate_code(address: usize) -> Option<CodeSpot> {
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

/// The return address of the function that faulted, where that function
/// has no frame record of its own (yet): a leaf function, which gcc builds
/// without one even with `-fno-omit-frame-pointer`, or a fault in a
/// prologue. The frame pointer is then still the caller's, and the walk
/// from it would skip the caller. Only for module code, whose functions
/// the namespace knows; `None` where the function's frame is in place or
/// nothing proves the candidate is a return address.
fn frameless_caller(registers: &Registers, low: usize, high: usize) -> Option<usize> {
    let function = locate_code(registers.pc)?;
    let candidate = caller_of_frameless(registers, function, low, high)?;
    // A return address into the function itself is a call it made (AArch64's
    // link register after a `bl` returned), not its caller.
    match locate_code(candidate.wrapping_sub(1)) {
        Some(caller) => (caller.function_start != function.function_start).then_some(candidate),
        // A module function called from outside modules (a thread's start
        // routine, a callback from libc).
        None => find_mapping(candidate)
            .is_some_and(|mapping| mapping.executable)
            .then_some(candidate),
    }
}

/// On AArch64 a call leaves the return address in the link register, where
/// a function without a frame record keeps it; with a frame record in
/// place the register holds the same address as the record, or one inside
/// the function itself.
#[cfg(target_arch = "aarch64")]
fn caller_of_frameless(
    registers: &Registers,
    _function: CodeSpot,
    _low: usize,
    _high: usize,
) -> Option<usize> {
    registers.link
}

/// On x86_64 a function with a frame starts `push %rbp; mov %rsp, %rbp`
/// (after an `endbr64`); before those ran, or in a function without them
/// that moved no stack pointer, the return address is at the stack pointer
/// (after the push, one word above). A function without them that did move
/// it leaves a local there: the candidate must be right after a call.
#[cfg(target_arch = "x86_64")]
fn caller_of_frameless(
    registers: &Registers,
    function: CodeSpot,
    low: usize,
    high: usize,
) -> Option<usize> {
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    const FRAME_PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
    let code = |offset: usize| read_code(function, offset);
    let starts_with = |at: usize, bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| code(at + index) == Some(*byte))
    };
    let prologue = if starts_with(0, &ENDBR64) { 4 } else { 0 };
    let stack_word = |index: usize| {
        let address = registers.sp.checked_add(index * WORD)?;
        let fits =
            address.is_multiple_of(WORD) && address >= low && address.checked_add(WORD)? <= high;
        // SAFETY: the word lies within the interrupted thread's stack,
        // between its stack pointer and its top.
        fits.then(|| unsafe { std::ptr::read(address as *const usize) })
    };
    let pc_offset = registers.pc.wrapping_sub(function.function_start);
    if starts_with(prologue, &FRAME_PROLOGUE) {
        return match pc_offset {
            offset if offset <= prologue => stack_word(0),
            offset if offset == prologue + 1 => stack_word(1),
            _ => None,
        };
    }
    stack_word(0).filter(|candidate| follows_call(*candidate))
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn caller_of_frameless(
    _registers: &Registers,
    _function: CodeSpot,
    _low: usize,
    _high: usize,
) -> Option<usize> {
    None
}

/// Byte `offset` of a module function, if it is inside the function.
#[cfg(target_arch = "x86_64")]
fn read_code(function: CodeSpot, offset: usize) -> Option<u8> {
    (offset < function.function_size).then(|| {
        // SAFETY: the byte is inside a function of a loaded module, whose
        // code is mapped readable (r-x) while the module is loaded.
        unsafe { std::ptr::read((function.function_start + offset) as *const u8) }
    })
}

/// Whether code address `address` follows a call instruction, direct or
/// indirect (through the GOT, a register, memory).
#[cfg(target_arch = "x86_64")]
fn follows_call(address: usize) -> bool {
    let before = match locate_code(address) {
        Some(spot) => spot.section_offset,
        None => match find_mapping(address) {
            Some(mapping) if mapping.readable && mapping.executable => address - mapping.start,
            _ => return false,
        },
    };
    // SAFETY: the bytes read are before `address` in its module section or
    // mapping (at most `before` back), which is code mapped readable.
    let byte = |back: usize| unsafe { std::ptr::read((address - back) as *const u8) };
    // `call rel32`, or `ff /2`: an indirect call, whose ModRM byte (reg
    // field 2) and displacement make it 2 to 7 bytes long.
    (before >= 5 && byte(5) == 0xe8)
        || (2..=7).any(|length| {
            before >= length && byte(length) == 0xff && (byte(length - 1) >> 3) & 7 == 2
        })
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

/// One line of `/proc/self/maps`, the parts the report uses.
struct Mapping {
    start: usize,
    end: usize,
    readable: bool,
    executable: bool,
    /// The line's bytes; the path is `path_start..line_len`.
    line: [u8; LINE_BYTES],
    path_start: usize,
    line_len: usize,
}

/// A `/proc/self/maps` line is about 75 bytes before its path; a longer
/// path is cut, which only shortens the name shown.
const LINE_BYTES: usize = 512;

impl Mapping {
    /// The file name of the mapped path, or `[stack]`, `[heap]`...; empty
    /// for anonymous memory.
    fn name(&self) -> &[u8] {
        let path = self
            .line
            .get(self.path_start..self.line_len)
            .unwrap_or_default();
        match path.iter().rposition(|&byte| byte == b'/') {
            Some(slash) => path.get(slash + 1..).unwrap_or_default(),
            None => path,
        }
    }
}

/// The mapping that holds `address`, read from `/proc/self/maps` with
/// plain system calls into buffers on the stack.
fn find_mapping(address: usize) -> Option<Mapping> {
    // SAFETY: open(2) of a NUL-terminated literal path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut chunk = [0u8; 1024];
    let mut mapping = Mapping {
        start: 0,
        end: 0,
        readable: false,
        executable: false,
        line: [0; LINE_BYTES],
        path_start: 0,
        line_len: 0,
    };
    let mut found = false;
    'reading: loop {
        // SAFETY: read(2) into our buffer, at most its length.
        let read = unsafe { libc::read(fd, chunk.as_mut_ptr().cast::<c_void>(), chunk.len()) };
        let Ok(read) = usize::try_from(read) else {
            break;
        };
        if read == 0 {
            break;
        }
        for &byte in chunk.get(..read).unwrap_or_default() {
            if byte != b'\n' {
                if let Some(slot) = mapping.line.get_mut(mapping.line_len) {
                    *slot = byte;
                    mapping.line_len += 1;
                }
                continue;
            }
            if parse_mapping(&mut mapping, address) {
                found = true;
                break 'reading;
            }
            mapping.line_len = 0;
        }
    }
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    found.then_some(mapping)
}

/// Parses the line in `mapping.line` (`start-end perms offset dev inode
/// path`); true, with the fields filled in, if it holds `address`.
fn parse_mapping(mapping: &mut Mapping, address: usize) -> bool {
    let line = mapping.line.get(..mapping.line_len).unwrap_or_default();
    let mut fields = line.split(|&byte| byte == b' ');
    let Some(range) = fields.next() else {
        return false;
    };
    let mut bounds = range.split(|&byte| byte == b'-');
    let (Some(start), Some(end)) = (
        bounds.next().and_then(parse_hex),
        bounds.next().and_then(parse_hex),
    ) else {
        return false;
    };
    if address < start || address >= end {
        return false;
    }
    let permissions = fields.next().unwrap_or_default();
    mapping.start = start;
    mapping.end = end;
    mapping.readable = permissions.first() == Some(&b'r');
    mapping.executable = permissions.get(2) == Some(&b'x');
    // The path begins after the fifth field and the spaces that pad it.
    let mut spaces = 0;
    let mut path_start = mapping.line_len;
    let mut previous_space = false;
    for (index, &byte) in line.iter().enumerate() {
        let space = byte == b' ';
        if space && !previous_space {
            spaces += 1;
        }
        if !space && spaces >= 5 {
            path_start = index;
            break;
        }
        previous_space = space;
    }
    mapping.path_start = path_start;
    true
}

/// A hexadecimal number without prefix, as `/proc/self/maps` writes them.
fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        let digit = char::from(digit).to_digit(16)?;
        value.checked_mul(16)?.checked_add(digit as usize)
    })
}

/// The signal's name and meaning, with the kernel's reason when it gives one.
fn describe_signal(signal: c_int, code: c_int) -> SignalText {
    let (name, meaning) = match signal {
        libc::SIGSEGV => ("SIGSEGV", "invalid memory reference"),
        libc::SIGBUS => ("SIGBUS", "bus error"),
        libc::SIGILL => ("SIGILL", "illegal instruction"),
        libc::SIGFPE => ("SIGFPE", "arithmetic exception"),
        libc::SIGTRAP => ("SIGTRAP", "trace or breakpoint trap"),
        _ => ("signal", "fatal signal"),
    };
    let reason = match (signal, code) {
        (libc::SIGSEGV, 1) => "address not mapped",
        (libc::SIGSEGV, 2) => "no permission for the access",
        (libc::SIGBUS, 1) => "misaligned address",
        (libc::SIGBUS, 2) => "nonexistent physical address",
        (libc::SIGBUS, 3) => "hardware error",
        (libc::SIGILL, 1) => "illegal opcode",
        (libc::SIGILL, 2) => "illegal operand",
        (libc::SIGILL, 3) => "illegal addressing mode",
        (libc::SIGILL, 4) => "illegal trap",
        (libc::SIGILL, 5) => "privileged opcode",
        (libc::SIGFPE, 1) => "integer divide by zero",
        (libc::SIGFPE, 2) => "integer overflow",
        (libc::SIGFPE, 3) => "floating-point divide by zero",
        (libc::SIGFPE, 4) => "floating-point overflow",
        (libc::SIGFPE, 5) => "floating-point underflow",
        (libc::SIGFPE, 6) => "floating-point inexact result",
        (libc::SIGFPE, 7) => "invalid floating-point operation",
        (libc::SIGTRAP, 1) => "breakpoint",
        (libc::SIGTRAP, 2) => "trace",
        _ => "",
    };
    SignalText {
        name,
        meaning,
        reason,
        number: signal,
    }
}

/// `SIGSEGV (invalid memory reference: address not mapped)`.
struct SignalText {
    name: &'static str,
    meaning: &'static str,
    reason: &'static str,
    number: c_int,
}

impl std::fmt::Display for SignalText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name == "signal" {
            write!(formatter, "signal {}", self.number)?;
        } else {
            write!(formatter, "{}", self.name)?;
        }
        write!(formatter, " ({}", self.meaning)?;
        if !self.reason.is_empty() {
            write!(formatter, ": {}", self.reason)?;
        }
        write!(formatter, ")")
    }
}

/// One line of the report, formatted in place: no allocation. What does
/// not fit is cut.
struct Line {
    bytes: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            bytes: [0; LINE_BYTES],
            len: 0,
        }
    }

    fn text(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the line and a newline to stderr, and empties it.
    fn emit(&mut self) {
        // The newline always fits: `write_str` keeps the last byte for it.
        if let Some(end) = self.bytes.get_mut(self.len) {
            *end = b'\n';
            self.len += 1;
        }
        let mut written = 0;
        while written < self.len {
            let rest = self.bytes.get(written..self.len).unwrap_or_default();
            // SAFETY: write(2) from our buffer, at most its length.
            let result = unsafe { libc::write(2, rest.as_ptr().cast::<c_void>(), rest.len()) };
            match usize::try_from(result) {
                Ok(count) if count > 0 => written += count,
                _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                _ => break,
            }
        }
        self.len = 0;
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = (LINE_BYTES - 1).saturating_sub(self.len);
        let take = text.len().min(room);
        if let Some(slots) = self.bytes.get_mut(self.len..self.len + take) {
            if let Some(source) = text.as_bytes().get(..take) {
                slots.copy_from_slice(source);
                self.len += take;
            }
        }
        // Cutting is not an error: the rest of the report still goes out.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping_line(text: &str) -> Mapping {
        let mut mapping = Mapping {
            start: 0,
            end: 0,
            readable: false,
            executable: false,
            line: [0; LINE_BYTES],
            path_start: 0,
            line_len: text.len(),
        };
        mapping.line[..text.len()].copy_from_slice(text.as_bytes());
        mapping
    }

    #[test]
    fn maps_lines() {
        let text = "7f12a4c28000-7f12a4d7d000 r-xp 00028000 fe:01 1312 \
                    /usr/lib/x86_64-linux-gnu/libc.so.6";
        let mut mapping = mapping_line(text);
        assert!(!parse_mapping(&mut mapping, 0x7f12a4c27fff));
        assert!(!parse_mapping(&mut mapping, 0x7f12a4d7d000));
        assert!(parse_mapping(&mut mapping, 0x7f12a4d7cfff));
        assert_eq!(
            (mapping.start, mapping.end),
            (0x7f12a4c28000, 0x7f12a4d7d000)
        );
        assert!(mapping.readable && mapping.executable);
        assert_eq!(mapping.name(), b"libc.so.6");

        let mut stack = mapping_line("7ffd1000-7ffd3000 rw-p 00000000 00:00 0          [stack]");
        assert!(parse_mapping(&mut stack, 0x7ffd2000));
        assert!(stack.readable && !stack.executable);
        assert_eq!(stack.name(), b"[stack]");

        let mut anonymous = mapping_line("40000000-40010000 ---p 00000000 00:00 0 ");
        assert!(parse_mapping(&mut anonymous, 0x40000000));
        assert!(!anonymous.readable);
        assert_eq!(anonymous.name(), b"");

        assert!(!parse_mapping(&mut mapping_line("garbage"), 0));
        assert!(!parse_mapping(&mut mapping_line(""), 0));
    }

    #[test]
    fn the_mapping_of_this_code_is_this_binary() {
        let mapping = find_mapping(maps_lines as *const () as usize).expect("this code is mapped");
        assert!(mapping.readable && mapping.executable);
        let path = std::env::current_exe().expect("the test binary's path");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        assert_eq!(mapping.name(), name.as_bytes());
        assert!(find_mapping(0x10).is_none());
    }

    #[test]
    fn hex_numbers() {
        assert_eq!(parse_hex(b"7f12a4c28000"), Some(0x7f12a4c28000));
        assert_eq!(parse_hex(b"0"), Some(0));
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"12g"), None);
        assert_eq!(parse_hex(b"1ffffffffffffffff"), None);
    }

    #[test]
    fn signal_descriptions() {
        let text = |signal, code| describe_signal(signal, code).to_string();
        assert_eq!(
            text(libc::SIGSEGV, 1),
            "SIGSEGV (invalid memory reference: address not mapped)"
        );
        assert_eq!(
            text(libc::SIGFPE, 1),
            "SIGFPE (arithmetic exception: integer divide by zero)"
        );
        assert_eq!(text(libc::SIGBUS, 0), "SIGBUS (bus error)");
        assert_eq!(text(libc::SIGTERM, 0), "signal 15 (fatal signal)");
    }

    #[test]
    fn long_lines_are_cut_with_room_for_the_newline() {
        let mut line = Line::new();
        let long = "x".repeat(LINE_BYTES * 2);
        let _ = write!(line, "{long}");
        assert_eq!(line.text().len(), LINE_BYTES - 1);
        let mut short = Line::new();
        let function = "main";
        let _ = write!(short, "pc {:#x}  {function}+{:#x}", 0x1234, 8);
        assert_eq!(short.text(), "pc 0x1234  main+0x8");
    }

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
