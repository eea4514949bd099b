//! The exception vector table, and probes: one memory access that may fault.
//!
//! The kernel runs in EL1t (on `SP_EL0`), so its exceptions arrive at the
//! "current EL with SP0" vectors and the handler runs on `SP_EL1`, a stack of
//! its own: even a kernel stack overflow is reported. An instruction or data
//! abort during a probe is recorded, and execution resumes at the probe's landing
//! pad with the return address and stack pointer saved before the access, so
//! [`probe`] returns the fault. Anything else prints ESR, FAR and ELR and ends
//! the run as a failure.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{Writeable, VBAR_EL1};

use crate::arch::{Access, Fault};
use crate::fault_report;

/// The probe's state, shared with the assembly: offsets are fixed (`repr(C)`).
#[repr(C)]
struct ProbeState {
    /// Offset 0: where a faulting probe resumes.
    landing: AtomicU64,
    /// Offset 8: the stack pointer (SP_EL0) to resume with.
    stack: AtomicU64,
    /// Offset 16: non-zero while the probed access runs.
    armed: AtomicU64,
    /// The fault's ESR_EL1 and FAR_EL1.
    syndrome: AtomicU64,
    address: AtomicU64,
    /// The fault's ELR_EL1.
    pc: AtomicU64,
}

static PROBE: ProbeState = ProbeState {
    landing: AtomicU64::new(0),
    stack: AtomicU64::new(0),
    armed: AtomicU64::new(0),
    syndrome: AtomicU64::new(0),
    address: AtomicU64::new(0),
    pc: AtomicU64::new(0),
};

/// The registers the vector entry saves, as the assembly lays them out.
#[repr(C)]
struct ExceptionFrame {
    /// x0 to x30.
    registers: [u64; 31],
    /// Offset 248: ELR_EL1, where the exception returns to.
    elr: u64,
    /// Offset 256: SPSR_EL1.
    spsr: u64,
    /// Offset 264: SP_EL0, the interrupted code's stack pointer.
    sp_el0: u64,
    /// Offset 272: ESR_EL1.
    esr: u64,
    /// Offset 280: FAR_EL1.
    far: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 288);

core::arch::global_asm!(
    r#"
    .section .text.vectors, "ax"
    /* 16 entries of 128 bytes, the table 2 KiB-aligned. Each saves x0 and x1,
     * puts its index in x0 and joins the common path. */
    .balign 2048
    .global modload_exception_vectors
modload_exception_vectors:
    .irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 128
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       modload_exception_common
    .endr

modload_exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el1
    stp     x30, x2, [sp, #240]
    mrs     x2, spsr_el1
    mrs     x3, sp_el0
    stp     x2, x3, [sp, #256]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #272]
    mov     x1, sp
    bl      {handler}
    /* The handler may have changed ELR and SP_EL0 (a probe's landing). */
    ldp     x2, x3, [sp, #248]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldr     x2, [sp, #264]
    msr     sp_el0, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #288
    eret

    .section .text.probe, "ax"
    .global modload_probe_access
/* u64 modload_probe_access(u64 kind, u64 address): 0 if the access completed,
 * 1 if it faulted. Saves every callee-saved register, because a fault inside
 * an executed target may leave them changed, and the landing pad restores
 * them from this frame. */
modload_probe_access:
    stp     x29, x30, [sp, #-160]!
    mov     x29, sp
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    adrp    x9, {state}
    add     x9, x9, :lo12:{state}
    adr     x10, 9f
    str     x10, [x9, #0]
    mov     x10, sp
    str     x10, [x9, #8]
    mov     x10, #1
    str     x10, [x9, #16]
    cbz     x0, 1f
    cmp     x0, #1
    b.eq    2f
    blr     x1
    b       3f
1:  ldrb    w10, [x1]
    b       3f
2:  ldrb    w10, [x1]
    strb    w10, [x1]
3:  mov     x0, #0
    b       4f
9:  mov     x0, #1
4:  adrp    x9, {state}
    add     x9, x9, :lo12:{state}
    str     xzr, [x9, #16]
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldp     x29, x30, [sp], #160
    ret
"#,
    handler = sym handle_exception,
    state = sym PROBE,
);

extern "C" {
    static modload_exception_vectors: u8;
    fn modload_probe_access(kind: u64, address: u64) -> u64;
}

/// Installs the vector table.
pub fn init() {
    let vectors = core::ptr::addr_of!(modload_exception_vectors) as u64;
    VBAR_EL1.set(vectors);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Performs `access` at `address`; `Some` with the fault if it faulted (an
/// instruction or data abort: permission, translation, alignment...). Any other
/// exception during the access, such as an undefined instruction reached by an
/// execute probe, is reported and ends the run.
pub fn probe(access: Access, address: u64) -> Option<Fault> {
    let kind = match access {
        Access::Read => 0,
        Access::Write => 1,
        Access::Execute => 2,
    };
    // SAFETY: probes target memory whose protection should make the access
    // fault, or a function that returns. If a read or write goes through, it
    // loads a byte and stores the same byte back, changing nothing; an
    // execute probe branches to the address with a link, so a function there
    // returns normally. A fault resumes at the landing pad with the saved
    // stack pointer and callee-saved registers, as if the call had returned.
    let faulted = unsafe { modload_probe_access(kind, address) } != 0;
    faulted.then(|| Fault {
        access,
        address: PROBE.address.load(Ordering::SeqCst),
        syndrome: PROBE.syndrome.load(Ordering::SeqCst),
        pc: PROBE.pc.load(Ordering::SeqCst),
    })
}

/// Vector index: synchronous exception from the current EL on SP_EL0.
const SYNCHRONOUS_CURRENT_SP0: u64 = 0;

/// `ESR_EL1.EC`: instruction abort from a lower exception level.
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
/// `ESR_EL1.EC`: instruction abort taken without a change of exception level.
const EC_INSTRUCTION_ABORT_CURRENT: u64 = 0x21;
/// `ESR_EL1.EC`: data abort from a lower exception level.
const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// `ESR_EL1.EC`: data abort taken without a change of exception level.
const EC_DATA_ABORT_CURRENT: u64 = 0x25;

/// The exception class (`ESR_EL1.EC`) of an `ESR_EL1` value.
fn class(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// Whether exception class `class` is an instruction or data abort, from
/// any exception level: the exceptions with an accessed address.
fn is_abort(class: u64) -> bool {
    matches!(
        class,
        EC_INSTRUCTION_ABORT_LOWER
            | EC_INSTRUCTION_ABORT_CURRENT
            | EC_DATA_ABORT_LOWER
            | EC_DATA_ABORT_CURRENT
    )
}

/// Called by the common vector path with the entry's index and the frame.
extern "C" fn handle_exception(kind: u64, frame: &mut ExceptionFrame) {
    let class = class(frame.esr);
    // Only aborts count as a probe's fault: an undefined instruction means an
    // execute probe ran code it should not have, which is reported instead.
    let abort = class == EC_INSTRUCTION_ABORT_CURRENT || class == EC_DATA_ABORT_CURRENT;
    if kind == SYNCHRONOUS_CURRENT_SP0 && abort && PROBE.armed.swap(0, Ordering::SeqCst) != 0 {
        fault_report::probe_fault(&frame.fault(&abort_kind(frame.esr)));
        PROBE.syndrome.store(frame.esr, Ordering::SeqCst);
        PROBE.address.store(frame.far, Ordering::SeqCst);
        PROBE.pc.store(frame.elr, Ordering::SeqCst);
        frame.elr = PROBE.landing.load(Ordering::SeqCst);
        frame.sp_el0 = PROBE.stack.load(Ordering::SeqCst);
        return;
    }
    report_unexpected(kind, frame);
    super::exit(false);
}

/// "Read fault", "Write fault" or "Execute fault" for an abort's `ESR_EL1`.
fn abort_kind(esr: u64) -> &'static str {
    match class(esr) {
        EC_INSTRUCTION_ABORT_LOWER | EC_INSTRUCTION_ABORT_CURRENT => "Execute fault",
        // WnR: the abort came from a write.
        _ if esr & (1 << 6) != 0 => "Write fault",
        _ => "Read fault",
    }
}

impl ExceptionFrame {
    /// The fault as a report shows it: the accessed address (`FAR_EL1`, for
    /// aborts only), the return address as pc, and `x29` as frame pointer.
    fn fault<'a>(&self, what: &'a dyn core::fmt::Display) -> fault_report::Fault<'a> {
        fault_report::Fault {
            what,
            address: is_abort(class(self.esr)).then_some(self.far),
            pc: self.elr,
            frame_pointer: self.registers[29],
        }
    }
}

/// Prints what the exception was, lock-free (the console lock may be held):
/// the symbolized report, then the registers.
fn report_unexpected(kind: u64, frame: &ExceptionFrame) {
    const ORIGINS: [&str; 4] = [
        "current EL, SP_EL0",
        "current EL, SP_EL1 (in a handler)",
        "lower EL, AArch64",
        "lower EL, AArch32",
    ];
    const TYPES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    let origin = ORIGINS.get((kind / 4) as usize).copied().unwrap_or("?");
    let type_ = TYPES.get((kind % 4) as usize).copied().unwrap_or("?");
    let class = class(frame.esr);
    let what: &dyn core::fmt::Display = if kind % 4 == 0 && is_abort(class) {
        &abort_kind(frame.esr)
    } else {
        &"Exception"
    };
    fault_report::report("UNEXPECTED ", &frame.fault(what), false);
    super::uart::print(format_args!(
        "  {type_} exception ({origin}): {}\n  ESR_EL1={:#x} FAR_EL1={:#x} ELR_EL1={:#x} SPSR_EL1={:#x} SP_EL0={:#x}\n",
        describe(frame.esr),
        frame.esr,
        frame.far,
        frame.elr,
        frame.spsr,
        frame.sp_el0,
    ));
    if super::memory::is_stack_guard(frame.far) && class == EC_DATA_ABORT_CURRENT {
        super::uart::print(format_args!("  (kernel stack overflow)\n"));
    }
}

/// The exception class of an `ESR_EL1` value, and for aborts their kind.
pub fn describe(esr: u64) -> &'static str {
    let class = class(esr);
    // Data and instruction fault status codes share the encoding of bits [5:2].
    let status = (esr & 0x3f) >> 2;
    match (class, status) {
        (0x25, 0b0001) => "data abort: translation fault (unmapped)",
        (0x25, 0b0010) => "data abort: access flag fault",
        (0x25, 0b0011) if esr & (1 << 6) != 0 => "data abort: permission fault on a write",
        (0x25, 0b0011) => "data abort: permission fault on a read",
        (0x25, _) => "data abort",
        (0x21, 0b0001) => "instruction abort: translation fault (unmapped)",
        (0x21, 0b0011) => "instruction abort: permission fault (not executable)",
        (0x21, _) => "instruction abort",
        (0x00, _) => "unknown instruction",
        (0x07, _) => "FP/SIMD access trapped",
        (0x15, _) => "SVC",
        (0x22, _) => "PC alignment fault",
        (0x26, _) => "SP alignment fault",
        (0x3c, _) => "BRK instruction",
        (0x2f, _) => "SError",
        _ => "other exception class",
    }
}
