//! Power off through PSCI `SYSTEM_OFF`, which QEMU's `virt` board implements:
//! with `hvc` when the kernel boots at EL1 (QEMU plays the hypervisor), with
//! `smc` when it boots at EL2 (QEMU plays EL3 firmware).

/// PSCI 0.2 `SYSTEM_OFF`, SMC32 calling convention.
const SYSTEM_OFF: u64 = 0x8400_0008;

/// Turns the machine off; QEMU exits. Never returns.
pub fn system_off() -> ! {
    if super::boot::booted_at_el2() {
        // SAFETY: a PSCI call; SYSTEM_OFF does not return on success, and the
        // registers SMCCC lets the firmware change are declared clobbered.
        unsafe {
            core::arch::asm!(
                "smc #0",
                inout("x0") SYSTEM_OFF => _,
                clobber_abi("C"),
                options(nomem, nostack)
            )
        };
    } else {
        // SAFETY: as above, through the hypervisor conduit.
        unsafe {
            core::arch::asm!(
                "hvc #0",
                inout("x0") SYSTEM_OFF => _,
                clobber_abi("C"),
                options(nomem, nostack)
            )
        };
    }
    // Only if the call failed: stop here.
    loop {
        aarch64_cpu::asm::wfe();
    }
}
