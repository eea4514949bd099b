//! The IDT, and probes: one memory access that may fault. A page fault during a
//! probe is recorded and execution resumes at the probe's landing pad with the
//! stack pointer saved before the access, so `probe` returns the fault. Any
//! other exception ends the run with a report.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use crate::arch::{Access, Fault};

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Where a faulting probe resumes, or 0 outside probes.
#[no_mangle]
static PROBE_LANDING: AtomicU64 = AtomicU64::new(0);
/// The stack pointer when the probe started.
#[no_mangle]
static PROBE_STACK: AtomicU64 = AtomicU64::new(0);
static FAULT_ADDRESS: AtomicU64 = AtomicU64::new(0);
static FAULT_CODE: AtomicU64 = AtomicU64::new(0);

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
/* u64 probe_access(u64 kind, u64 address): 0 if the access completed, 1 if it faulted. */
probe_access:
    mov %rsp, PROBE_STACK(%rip)
    lea probe_landing(%rip), %rax
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
    ret
probe_landing:
    movq $0, PROBE_LANDING(%rip)
    mov $1, %eax
    ret
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
    // W^X is broken (which the step then reports). A fault returns here
    // through the landing pad with the saved stack pointer.
    let faulted = unsafe { probe_access(kind, address) } != 0;
    faulted.then(|| Fault {
        access,
        address: FAULT_ADDRESS.load(Ordering::SeqCst),
        syndrome: FAULT_CODE.load(Ordering::SeqCst),
    })
}

extern "x86-interrupt" fn page_fault(mut frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let address = Cr2::read_raw();
    let landing = PROBE_LANDING.load(Ordering::SeqCst);
    if landing == 0 {
        println!(
            "UNEXPECTED page fault at {address:#x} ({code:?}), rip {:#x}",
            frame.instruction_pointer.as_u64()
        );
        super::exit(false);
    }
    FAULT_ADDRESS.store(address, Ordering::SeqCst);
    FAULT_CODE.store(code.bits(), Ordering::SeqCst);
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

extern "x86-interrupt" fn general_protection(frame: InterruptStackFrame, code: u64) {
    println!(
        "UNEXPECTED general protection fault {code:#x} at {:#x}",
        frame.instruction_pointer.as_u64()
    );
    super::exit(false);
}

extern "x86-interrupt" fn invalid_opcode(frame: InterruptStackFrame) {
    println!(
        "UNEXPECTED invalid opcode at {:#x}",
        frame.instruction_pointer.as_u64()
    );
    super::exit(false);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, _code: u64) -> ! {
    println!(
        "UNEXPECTED double fault at {:#x}",
        frame.instruction_pointer.as_u64()
    );
    super::exit(false);
}
