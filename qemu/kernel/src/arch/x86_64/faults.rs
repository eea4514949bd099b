//! The IDT, and probes: one memory access that may fault. A page fault during a
//! probe is recorded and execution resumes at the probe's landing pad with the
//! stack pointer saved before the access, so `probe` returns the fault. Any
//! other exception ends the run with a report.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use crate::arch::{Access, Fault};
use crate::fault_report;

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Where a faulting probe resumes, or 0 outside probes.
#[no_mangle]
static PROBE_LANDING: AtomicU64 = AtomicU64::new(0);
/// The stack pointer when the probe started.
#[no_mangle]
static PROBE_STACK: AtomicU64 = AtomicU64::new(0);
static FAULT_ADDRESS: AtomicU64 = AtomicU64::new(0);
static FAULT_CODE: AtomicU64 = AtomicU64::new(0);
static FAULT_PC: AtomicU64 = AtomicU64::new(0);

pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.page_fault.set_handler_fn(page_fault);
        idt.general_protection_fault
            .set_handler_fn(general_protection);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.double_fault.set_handler_fn(double_fault);
        idt
    });
    idt.load();
}

core::arch::global_asm!(
    r#"
    .section .text.probe, "ax"
    .global probe_access
    .type probe_access, @function
/* u64 probe_access(u64 kind, u64 address): 0 if the access completed, 1 if it
 * faulted. A frame record (rbp) makes it one frame of a fault's backtrace;
 * every callee-saved register is saved, because a fault inside an executed
 * target may leave them changed, and the landing pad restores them. */
probe_access:
    push %rbp
    mov %rsp, %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    /* Six pushes after the call's: 16-byte aligned again for `call`. */
    sub $8, %rsp
    mov %rsp, PROBE_STACK(%rip)
    lea .Lprobe_landing(%rip), %rax
    mov %rax, PROBE_LANDING(%rip)
    cmp $0, %rdi
    je 1f
    cmp $1, %rdi
    je 2f
    call *%rsi
    jmp 3f
1:  movb (%rsi), %al
    jmp 3f
2:  movb (%rsi), %al
    movb %al, (%rsi)
3:  movq $0, PROBE_LANDING(%rip)
    xor %eax, %eax
    jmp 4f
.Lprobe_landing:
    movq $0, PROBE_LANDING(%rip)
    mov $1, %eax
4:  add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    .size probe_access, . - probe_access
    "#,
    options(att_syntax)
);

extern "C" {
    fn probe_access(kind: u64, address: u64) -> u64;
}

/// Performs `access` at `address`; `Some` with the fault if it faulted.
pub fn probe(access: Access, address: u64) -> Option<Fault> {
    let kind = match access {
        Access::Read => 0,
        Access::Write => 1,
        Access::Execute => 2,
    };
    // SAFETY: the scenario probes module memory whose protection should make
    // the access fault; if it does not, a read or a same-value write changes
    // nothing, and an execute probe targets data that is never reached unless
    // W^X is broken (which the step then reports), or a module function that
    // returns or faults. A fault returns here
    // through the landing pad with the saved stack pointer.
    let faulted = unsafe { probe_access(kind, address) } != 0;
    faulted.then(|| Fault {
        access,
        address: FAULT_ADDRESS.load(Ordering::SeqCst),
        syndrome: FAULT_CODE.load(Ordering::SeqCst),
        pc: FAULT_PC.load(Ordering::SeqCst),
    })
}

/// The interrupted code's frame pointer, or 0 if it cannot be known.
///
/// Built with frame pointers, a handler starts with `push rbp; mov rbp, rsp`
/// right below what the CPU pushed (LLVM may push one slot first to align the
/// stack), so its own frame record holds the interrupted `rbp`. That is
/// checked, not assumed: the record must sit at most one slot below the CPU's
/// frame and error code, else no backtrace is shown.
macro_rules! interrupted_frame_pointer {
    ($frame:expr, $error_code:expr) => {{
        let own: u64;
        // SAFETY: reads this handler's frame pointer register; no memory.
        unsafe { asm!("mov {}, rbp", out(reg) own, options(nomem, nostack, preserves_flags)) };
        let cpu_frame = &*$frame as *const _ as u64;
        let nearest = if $error_code { 16 } else { 8 };
        let distance = cpu_frame.wrapping_sub(own);
        if own != 0 && (distance == nearest || distance == nearest + 8) {
            // SAFETY: `own` is this handler's frame record, on the current
            // stack just below the CPU's frame: it holds the saved `rbp`.
            unsafe { core::ptr::read_volatile(own as *const u64) }
        } else {
            0
        }
    }};
}

/// "Read fault", "Write fault" or "Execute fault", from the error code.
fn fault_kind(code: PageFaultErrorCode) -> &'static str {
    if code.contains(PageFaultErrorCode::INSTRUCTION_FETCH) {
        "Execute fault"
    } else if code.contains(PageFaultErrorCode::CAUSED_BY_WRITE) {
        "Write fault"
    } else {
        "Read fault"
    }
}

extern "x86-interrupt" fn page_fault(mut frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let frame_pointer = interrupted_frame_pointer!(frame, true);
    let address = Cr2::read_raw();
    let pc = frame.instruction_pointer.as_u64();
    let landing = PROBE_LANDING.load(Ordering::SeqCst);
    let fault = fault_report::Fault {
        what: &fault_kind(code),
        address: Some(address),
        pc,
        frame_pointer,
    };
    if landing == 0 {
        fault_report::report("UNEXPECTED ", &fault, false);
        crate::console::print_unlocked(format_args!("  page fault error code {code:?}\n"));
        super::exit(false);
    }
    fault_report::probe_fault(&fault);
    FAULT_ADDRESS.store(address, Ordering::SeqCst);
    FAULT_CODE.store(code.bits(), Ordering::SeqCst);
    FAULT_PC.store(pc, Ordering::SeqCst);
    let stack = PROBE_STACK.load(Ordering::SeqCst);
    // SAFETY: resuming at the landing pad with the stack pointer saved at the
    // probe's start returns from `probe_access` as if the access completed; the
    // segments and flags stay as the fault found them.
    unsafe {
        frame.as_mut().update(|frame| {
            frame.instruction_pointer = x86_64::VirtAddr::new(landing);
            frame.stack_pointer = x86_64::VirtAddr::new(stack);
        });
    }
}

/// Reports an exception no probe expects and ends the run.
fn unexpected(what: &dyn fmt::Display, pc: u64, frame_pointer: u64) -> ! {
    fault_report::report(
        "UNEXPECTED ",
        &fault_report::Fault {
            what,
            address: None,
            pc,
            frame_pointer,
        },
        false,
    );
    super::exit(false);
}

extern "x86-interrupt" fn general_protection(frame: InterruptStackFrame, code: u64) {
    let frame_pointer = interrupted_frame_pointer!(frame, true);
    unexpected(
        &format_args!("General protection fault (code {code:#x})"),
        frame.instruction_pointer.as_u64(),
        frame_pointer,
    );
}

extern "x86-interrupt" fn invalid_opcode(frame: InterruptStackFrame) {
    let frame_pointer = interrupted_frame_pointer!(frame, false);
    unexpected(
        &"Invalid opcode",
        frame.instruction_pointer.as_u64(),
        frame_pointer,
    );
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, _code: u64) -> ! {
    let frame_pointer = interrupted_frame_pointer!(frame, true);
    unexpected(
        &"Double fault",
        frame.instruction_pointer.as_u64(),
        frame_pointer,
    );
}
