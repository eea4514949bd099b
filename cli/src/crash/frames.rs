//! The interrupted thread's registers, read from the `ucontext_t` per
//! machine, and the return address of a function that has no frame record
//! of its own (yet), which the frame-pointer walk would skip.

use std::ffi::c_void;

use super::maps::find_mapping;
use super::symbols::{locate_code, CodeSpot};
// Only x86_64 reads the call before a return address; AArch64 has the link
// register.
#[cfg(target_arch = "x86_64")]
use super::symbols::{bytes_before, read_before, CALL_BYTES};

/// A frame record is two words: the caller's frame pointer, then the
/// return address (x86_64 `push rbp; mov rbp, rsp`; AArch64 `stp x29, x30`).
pub(super) const WORD: usize = std::mem::size_of::<usize>();

/// Frame pointers are at least this aligned: 8 on x86_64 (16 in practice,
/// but hand-written code need not keep that), 16 on AArch64, whose stack
/// pointer is always 16-byte aligned.
#[cfg(target_arch = "aarch64")]
pub(super) const FRAME_ALIGN: usize = 16;
#[cfg(not(target_arch = "aarch64"))]
pub(super) const FRAME_ALIGN: usize = 8;

/// The interrupted thread's registers that the report needs.
#[derive(Clone, Copy)]
pub(super) struct Registers {
    pub(super) pc: usize,
    pub(super) sp: usize,
    pub(super) frame_pointer: usize,
    /// The link register (AArch64): the return address of a function that
    /// faulted before saving it.
    pub(super) link: Option<usize>,
}

impl Registers {
    /// Reads them from the `ucontext_t` the kernel passed to the handler.
    ///
    /// # Safety
    /// `context` is the handler's third argument.
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn of(context: *mut c_void) -> Option<Self> {
        // SAFETY: the caller passes the kernel's ucontext_t.
        let context = unsafe { &*context.cast::<libc::ucontext_t>() };
        let gregs = &context.uc_mcontext.gregs;
        let register = |index: libc::c_int| {
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
    pub(super) unsafe fn of(context: *mut c_void) -> Option<Self> {
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
    pub(super) unsafe fn of(_context: *mut c_void) -> Option<Self> {
        None
    }
}

/// A return address as stored, with any pointer authentication code (the
/// bits above the 48-bit user address space) removed.
#[cfg(target_arch = "aarch64")]
pub(super) fn strip_pointer_authentication(address: usize) -> usize {
    address & ((1 << 48) - 1)
}
#[cfg(not(target_arch = "aarch64"))]
pub(super) fn strip_pointer_authentication(address: usize) -> usize {
    address
}

/// The return address of the function that faulted, where that function
/// has no frame record of its own (yet): a leaf function, which gcc builds
/// without one even with `-fno-omit-frame-pointer`, or a fault in a
/// prologue. The frame pointer is then still the caller's, and the walk
/// from it would skip the caller. Only for module code, whose functions
/// the namespace knows; `None` where the function's frame is in place or
/// nothing proves the candidate is a return address.
pub(super) fn frameless_caller(registers: &Registers, low: usize, high: usize) -> Option<usize> {
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

/// The word `index` words above the stack pointer `sp`, if it lies, aligned,
/// within `[low, high)`: the interrupted thread's stack from its stack
/// pointer to its top, which the caller found mapped readable.
pub(super) fn stack_word(sp: usize, index: usize, low: usize, high: usize) -> Option<usize> {
    let address = sp.checked_add(index.checked_mul(WORD)?)?;
    let fits = address.is_multiple_of(WORD) && address >= low && address.checked_add(WORD)? <= high;
    // SAFETY: the word lies within the interrupted thread's stack, between
    // its stack pointer and its top.
    fits.then(|| unsafe { std::ptr::read(address as *const usize) })
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
    let code = |offset: usize| function.head_byte(offset);
    let starts_with = |at: usize, bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| code(at + index) == Some(*byte))
    };
    let prologue = if starts_with(0, &ENDBR64) { 4 } else { 0 };
    let stack_word = |index: usize| stack_word(registers.sp, index, low, high);
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

/// Whether code address `address` follows a call instruction, direct or
/// indirect (through the GOT, a register, memory).
#[cfg(target_arch = "x86_64")]
fn follows_call(address: usize) -> bool {
    let (bytes, count) = match bytes_before(address) {
        Some(found) => found,
        None => match find_mapping(address) {
            Some(mapping) if mapping.readable && mapping.executable => {
                let count = (address - mapping.start).min(CALL_BYTES);
                // SAFETY: the `count` bytes before `address` are in its
                // mapping, which is code mapped readable outside any module
                // (no unload frees it).
                (unsafe { read_before(address, count) }, count)
            }
            _ => return false,
        },
    };
    // `byte(back)` is the byte `back` bytes before `address`.
    let byte = |back: usize| match back <= count {
        true => CALL_BYTES
            .checked_sub(back)
            .and_then(|index| bytes.get(index))
            .copied(),
        false => None,
    };
    // `call rel32`, or `ff /2`: an indirect call, whose ModRM byte (reg
    // field 2) and displacement make it 2 to 7 bytes long.
    byte(5) == Some(0xe8)
        || (2..=7).any(|length| {
            byte(length) == Some(0xff)
                && byte(length - 1).is_some_and(|modrm| (modrm >> 3) & 7 == 2)
        })
}
