//! Instruction-cache maintenance after writing code.
//!
//! x86-64 keeps instruction fetch coherent with stores, so nothing is needed
//! there. AArch64 does not: new instructions must be cleaned from the data
//! cache to the point of unification and the stale instruction-cache lines
//! invalidated, with barriers, before any core runs them.

/// Makes the instructions written to `[start, start + len)` visible to
/// instruction fetch on every core of the inner shareable domain.
///
/// On AArch64 this is `dc cvau` for each data-cache line, `dsb ish`, `ic ivau`
/// for each instruction-cache line, `dsb ish`, `isb`, skipping the halves that
/// `CTR_EL0.IDC`/`CTR_EL0.DIC` say the hardware already does. Line sizes come
/// from `CTR_EL0`, never from a guess. Elsewhere it does nothing.
///
/// # Safety
/// The whole range must be mapped at these virtual addresses (cache
/// maintenance by address faults on an unmapped page), and readable.
pub unsafe fn sync_instruction_cache(start: u64, len: u64) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: forwarded from this function's contract.
    unsafe {
        aarch64::sync(start, len)
    };
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (start, len);
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use core::arch::asm;

    /// `CTR_EL0.IDC`: cleaning to the point of unification is not required.
    const IDC: u64 = 1 << 28;
    /// `CTR_EL0.DIC`: instruction-cache invalidation is not required.
    const DIC: u64 = 1 << 29;

    /// Line size in bytes from a `CTR_EL0` field holding log2(words).
    fn line(ctr: u64, shift: u32) -> u64 {
        4 << ((ctr >> shift) & 0xf)
    }

    pub(super) unsafe fn sync(start: u64, len: u64) {
        let ctr: u64;
        // SAFETY: reading CTR_EL0 has no side effects; EL1 and (with
        // SCTLR_EL1.UCT, as Linux sets it) EL0 may read it.
        unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
        let end = start.saturating_add(len);
        if ctr & IDC == 0 {
            let step = line(ctr, 16);
            let mut address = start & !(step - 1);
            while address < end {
                // SAFETY: the caller guarantees the range is mapped; cleaning a
                // line writes back data and changes no memory contents.
                unsafe { asm!("dc cvau, {}", in(reg) address, options(nostack, preserves_flags)) };
                address = address.saturating_add(step);
            }
        }
        // SAFETY: a barrier has no memory-safety effect.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
        if ctr & DIC == 0 {
            let step = line(ctr, 0);
            let mut address = start & !(step - 1);
            while address < end {
                // SAFETY: as above; invalidating instruction-cache lines only
                // makes later fetches read memory again.
                unsafe { asm!("ic ivau, {}", in(reg) address, options(nostack, preserves_flags)) };
                address = address.saturating_add(step);
            }
            // SAFETY: barriers only.
            unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
        }
        // SAFETY: a barrier only: later fetches on this core see the new code.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
    }
}
